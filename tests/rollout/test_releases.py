"""Promotion, rollback and routes as library functions (the CLI and the admin API call these)."""

import pytest

from mldeploy.errors import ModelUnavailableError, NothingToRollBackError, UnknownModelError, UsageError
from mldeploy.project import Project
from mldeploy.rollout.releases import promote, resolve_version, rollback, set_route


def test_promote_pins_what_goes_live_and_rollback_returns(project_dir):
    project = Project()
    spec = project.registry().resolve("faces@v2")
    change = promote(project, spec, reason="try v2")
    assert (change.from_version, change.to_version, change.action) == ("v1", "v2", "promote")
    assert set(project.store().pins("faces@v2")) == {"pnet", "rnet", "onet"}  # pinned on the way in
    assert promote(project, spec) is None  # already live: nothing to record
    back = rollback(project, "faces")
    assert (back.from_version, back.to_version) == ("v2", "v1") and project.registry().default_version("faces") == "v1"


def test_a_version_whose_files_are_missing_is_not_promoted(project_dir, yolo_dir):
    project = Project()
    spec = project.registry().resolve("objects@yolov3")
    with pytest.raises(ModelUnavailableError, match="not promoted"):
        promote(project, spec)
    assert promote(project, spec, force=True).to_version == "yolov3"


def test_unknown_models_are_404s_and_bad_routes_usage_errors(project_dir):
    project = Project()
    with pytest.raises(UnknownModelError):
        rollback(project, "nope")
    with pytest.raises(NothingToRollBackError):
        rollback(project, "faces")
    with pytest.raises(UsageError, match="is the live version"):
        set_route(project, "faces", shadow="v1")
    with pytest.raises(UsageError, match="not a percentage"):
        set_route(project, "faces", canary="v2", weight=150)
    route = set_route(project, "faces", shadow="v2")
    assert route.shadow_version == "v2" and project.store().history("faces")[-1].action == "route"


def test_versions_resolve_the_way_the_cli_names_them(project_dir):
    registry = Project().registry()
    assert resolve_version(registry, "v2", "faces").ref == "faces@v2"
    assert resolve_version(registry, "faces-haar@alt2", "faces").ref == "faces-haar@alt2"
    assert resolve_version(registry, "cats", "faces").ref == "cats@haar"  # a bare model name: its live version
