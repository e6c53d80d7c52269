from dataclasses import replace

import pytest


@pytest.fixture
def flaky(monkeypatch):
    """Adds faces@flaky (faces@v1 that raises on images wider than 520 px) to every registry."""
    import mldeploy.project
    from mldeploy.models import registry as registry_module

    real = registry_module.builtin_specs

    def with_flaky():
        specs = real()
        base = next(s for s in specs if s.ref == "faces@v1")
        return specs + [replace(base, version="flaky", backend="flaky", description="planted fault")]

    monkeypatch.setitem(registry_module.BACKENDS, "flaky", "tests.rollout.flaky:FlakyDetector")
    monkeypatch.setattr(mldeploy.project, "builtin_specs", with_flaky)
    return "faces@flaky"
