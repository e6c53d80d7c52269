"""A planted fault: faces@v1's real network, raising on images wider than 520 pixels."""

from mldeploy.models.ssd import CaffeSSDDetector


class FlakyDetector(CaffeSSDDetector):
    def _predict(self, image, conf):
        if image.shape[1] > 520:
            raise RuntimeError("planted fault: out of memory")
        return super()._predict(image, conf)
