import pytest

from mldeploy.errors import ConfigError
from mldeploy.project import Project


def make(tmp_path, text):
    (tmp_path / "mldeploy.toml").write_text(text)
    return Project(state_dir=tmp_path / "state", cwd=tmp_path)


def test_the_project_file_is_found_in_the_working_directory(project_dir):
    project = Project()
    assert project.config_path == project_dir / "mldeploy.toml"
    assert project.state_dir == project_dir / ".mldeploy"
    registry = project.registry()
    stricter = registry.resolve("faces@blind")
    assert (stricter.backend, stricter.conf) == ("ssd-caffe", 0.99999)
    assert registry.resolve("faces@slow").options["input_size"] == 900
    shapes = registry.resolve("shapes")  # a model of the project's own: its first version by default
    assert shapes.ref == "shapes@v1" and shapes.classes == ("square",)
    assert shapes.files["cfg"] == project_dir / "nets" / "v1.cfg"  # relative to mldeploy.toml
    assert registry.resolve("faces").ref == "faces@v1"  # adding versions does not change what is live


def test_environment_variables(tmp_path, monkeypatch):
    (tmp_path / "elsewhere.toml").write_text('[models.faces.v9]\nfrom = "faces@v2"\nconf = 0.99\n')
    monkeypatch.setenv("MLDEPLOY_CONFIG", str(tmp_path / "elsewhere.toml"))
    monkeypatch.setenv("MLDEPLOY_STATE_DIR", str(tmp_path / "st"))
    project = Project(cwd=tmp_path)
    assert project.state_dir == tmp_path / "st"
    assert project.registry().resolve("faces@v9").conf == 0.99


def test_live_versions_come_from_the_state(tmp_path):
    project = make(tmp_path, '[models.faces.v3]\nfrom = "faces@v2"\n')
    project.store().switch("faces", "v3", current_default="v1")
    assert project.registry().resolve("faces").ref == "faces@v3"
    assert project.registry(with_live=False).resolve("faces").ref == "faces@v1"


@pytest.mark.parametrize(
    "text, message",
    [
        ("[models.faces.v3\n", "not valid TOML"),
        ("[servers]\nx = 1\n", "unknown section 'servers'"),
        ('[models.faces.v1]\nfrom = "faces@v2"\n', "built-in version"),
        ('[models.faces.v3]\nfrom = "faces@v2"\nthreshold = 0.9\n', "unknown key 'threshold'"),
        ('[models.faces.v3]\nconf = 0.9\n', "either from"),
        ('[models.faces.v3]\nfrom = "faces@v7"\n', "no version 'v7'"),
        ('[models.faces.v3]\nfrom = "faces"\n', "must name a version"),
        ('[models.faces.v3]\nfrom = "faces@v2"\nconf = 2\n', "conf must be a number from 0 to 1"),
        ('[models.faces.v3]\nfrom = "faces@v2"\ncfg = "x.cfg"\n', "'cfg' cannot be changed"),
        ('[models.signs.v1]\nbackend = "darknet"\nweights = "w"\nnames = "n"\n', "needs cfg"),
        ('[models.signs.v1]\nbackend = "pytorch"\n', "cannot be declared here"),
        ('[models.signs.v1]\nbackend = "haar"\ncascade = "c.xml"\n', "say which labels"),
        ('[models]\nfaces = 3\n', "one table per version"),
        ("[gates]\nmax_latency = 2\n", None),  # checked when the gates are resolved, below
    ],
)
def test_bad_project_files_say_where(tmp_path, text, message):
    project = make(tmp_path, text)
    if message is None:
        from mldeploy.rollout.gates import resolve_bounds

        with pytest.raises(ConfigError, match="unknown gate 'max_latency'"):
            resolve_bounds({}, project.settings.gates)
        return
    with pytest.raises(ConfigError, match=message) as info:
        project.registry()
    assert "mldeploy.toml" in str(info.value) and "\n" not in str(info.value)


def test_a_missing_config_named_explicitly(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Project(config_path=tmp_path / "nope.toml", cwd=tmp_path).registry()
