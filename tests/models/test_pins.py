"""SHA-256 pinning: recorded when a version is validated or promoted, enforced when it loads."""

import pytest

from mldeploy.errors import ModelUnavailableError
from mldeploy.models import registry as registry_module
from mldeploy.project import Project


@pytest.fixture(autouse=True)
def fresh_loads(monkeypatch):
    monkeypatch.setattr(registry_module, "_loaded", {})  # each test loads from disk again


def test_promote_pins_and_a_changed_file_is_refused(byo_project):
    from mldeploy.rollout.releases import promote

    project = Project()
    spec = project.registry().resolve("red@v5")
    promote(project, spec, reason="go")
    (pin,) = project.store().pins("red@v5").values()
    assert pin[0].endswith("red-v5.onnx") and len(pin[1]) == 64
    project.load(spec)  # unchanged: loads
    model = byo_project / "nets" / "red-v5.onnx"
    model.write_bytes((byo_project / "nets" / "red-v8.onnx").read_bytes())  # someone replaced the file (with a valid model)
    registry_module._loaded.clear()
    with pytest.raises(ModelUnavailableError, match=r"red@v5: model file .*red-v5.onnx changed since it was pinned on .* UTC \(sha256 \w{12}\.\.\. now \w{12}\.\.\.\); refusing to load it\. If the change is intended, run 'mldeploy models pin red@v5'"):
        project.load(spec)
    project.pin(spec)  # the user says the change is intended
    project.load(spec)


def test_a_saved_model_folder_is_pinned_as_a_whole(byo_project):
    project = Project()
    spec = project.registry().resolve("red@saved")
    project.pin(spec)
    (byo_project / "nets" / "red-saved" / "variables" / "extra.txt").write_text("tampered")
    with pytest.raises(ModelUnavailableError, match="saved_model file .* changed since it was pinned"):
        project.load(spec)
