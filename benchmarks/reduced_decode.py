"""Reduced-size JPEG decoding for ``mldeploy detect``: does it change the answers, and what does it save?

Models that resize their input anyway (the SSD to 300x300, YOLO to its input size, HOG and the Haar
cascades to a bounded side) can take a JPEG decoded at 1/2, 1/4 or 1/8 scale inside the DCT (Pillow's
``draft``): the decoder does a fraction of the work. The set: the sample photos at their own size
(512 px and less: nothing to reduce) and as JPEGs at 1536, 2048 and 3072 px (like camera photos).
For each model, ``detect_images`` with full decoding (the baseline) and with reduced decoding, in the
same run, ``--repeat`` times (the fastest counts):

* agreement of the reduced run with the full one: F1 and mean IoU of matched boxes (IoU >= 0.5);
* wall time of the run, and the time spent decoding (``read_image`` alone, same images).

Run from the repository root:  .venv/bin/python benchmarks/reduced_decode.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import ROOT, build_folder, timed

MODELS = ("faces@v1", "people@hog", "faces-haar@default", "cats@haar")
SIZES = (1536, 2048, 3072)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from mldeploy.compare import AgreementMetric
    from mldeploy.images import read_image_at_least
    from mldeploy.models import default_registry, load_detector
    from mldeploy.pipeline import collect_inputs
    from mldeploy.rollout.engines.local import detect_images

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build_folder(folder, SIZES)
        for photo in sorted((ROOT / "sample_images").glob("*.jpg")):
            (folder / photo.name).write_bytes(photo.read_bytes())
        images, _ = collect_inputs([str(folder)])
        print(f"{len(images)} JPEGs: the 5 sample photos (<= 512 px) and the same at {', '.join(map(str, SIZES))} px; "
              f"fastest of {args.repeat}\n")
        print(f"{'model':<20} {'side':>5} {'full s':>7} {'reduced s':>10} {'speed-up':>9} {'decode full':>12} {'decode red.':>12} "
              f"{'F1':>6} {'mean IoU':>9}")
        for ref in MODELS:
            detector = load_detector(default_registry().resolve(ref))
            side = detector.min_input_side
            full = [timed(lambda: list(detect_images(images, detector, reduced_decode=False))) for _ in range(args.repeat)]
            reduced = [timed(lambda: list(detect_images(images, detector))) for _ in range(args.repeat)]
            decode_full = min(timed(lambda: [read_image_at_least(i.path, None) for i in images]).wall for _ in range(args.repeat))
            decode_reduced = min(timed(lambda: [read_image_at_least(i.path, side) for i in images]).wall for _ in range(args.repeat))
            metric = AgreementMetric()
            for a, b in zip(full[0].result, reduced[0].result):
                metric.update(a.detections, b.detections)
            agreement = metric.compute()
            f, r = min(t.wall for t in full), min(t.wall for t in reduced)
            print(f"{ref:<20} {side or '-':>5} {f:>7.2f} {r:>10.2f} {f / r:>8.2f}x {decode_full:>11.2f}s {decode_reduced:>11.2f}s "
                  f"{agreement.f1:>6.3f} {agreement.mean_iou or 1:>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
