"""A planted fault: faces@v1's real network, raising on images wider than 520 pixels."""

from dataclasses import replace

from mldeploy.models.ssd import CaffeSSDDetector

REF = "faces@flaky"


class FlakyDetector(CaffeSSDDetector):
    def _predict(self, image, conf):
        if image.shape[1] > 520:
            raise RuntimeError("planted fault: out of memory")
        return super()._predict(image, conf)


def patches():
    """(object, attribute, new value) that add faces@flaky to every registry of this process."""
    import mldeploy.project
    from mldeploy.models import registry as registry_module

    real = registry_module.builtin_specs

    def with_flaky():
        specs = real()
        base = next(s for s in specs if s.ref == "faces@v1")
        return specs + [replace(base, version="flaky", backend="flaky", description="planted fault")]

    backends = {**registry_module.BACKENDS, "flaky": "tests.rollout.flaky:FlakyDetector"}
    return [(registry_module, "BACKENDS", backends), (mldeploy.project, "builtin_specs", with_flaky)]


def install():
    """For a server process started by the tests (tests/server/launch.py)."""
    for obj, name, value in patches():
        setattr(obj, name, value)
