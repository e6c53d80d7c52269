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
