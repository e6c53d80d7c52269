"""A planted fault: faces@v1's real network, raising on images wider than 520 pixels.

The test project's mldeploy.toml declares it as ``faces@flaky`` with ``detector = "tests.helpers.flaky:FlakyDetector"``,
the seam a user has for a Detector of their own: no module of mldeploy is patched.
"""

from mldeploy.models.ssd import CaffeSSDDetector


class FlakyDetector(CaffeSSDDetector):
    def _predict(self, image, conf):
        if image.shape[1] > 520:
            raise RuntimeError("planted fault: out of memory")
        return super()._predict(image, conf)


class SleepyDetector(CaffeSSDDetector):
    """faces@v1's network and answers, 0.3 s slower per image: a shadow that falls behind the traffic."""

    def _predict(self, image, conf):
        import time

        time.sleep(0.3)
        return super()._predict(image, conf)
