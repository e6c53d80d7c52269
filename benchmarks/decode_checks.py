"""What the upload checks cost: decoding with the format allow-list against Pillow's unrestricted open.

Every image of a shadow run, a detect run and an upload goes through ``mldeploy.images.decode_image``,
which tells Pillow to try only JPEG, PNG, WebP, BMP, TIFF and GIF (so EPS and the rest never reach a
decoder) and checks the pixel count from the header first. The baseline, in the same run, is
``Image.open`` with every plugin and the same conversion to BGR. ``--repeat`` rounds over the sample
photos as JPEG and PNG; the fastest round of each counts.

Run from the repository root:  .venv/bin/python benchmarks/decode_checks.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import io
import sys

from common import ROOT, timed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    from PIL import Image

    from mldeploy.images import _to_bgr8, decode_image

    blobs = []
    for photo in sorted((ROOT / "sample_images").glob("*.jpg")):
        data = photo.read_bytes()
        png = io.BytesIO()
        Image.open(io.BytesIO(data)).save(png, "PNG")
        blobs += [data, png.getvalue()]

    def unrestricted():
        for data in blobs:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                _to_bgr8(img)

    def checked():
        for data in blobs:
            decode_image(data)

    best = {"Pillow, every plugin (baseline)": [], "decode_image (allow-list, pixel check)": []}
    for _ in range(args.repeat):
        best["Pillow, every plugin (baseline)"].append(timed(unrestricted).wall)
        best["decode_image (allow-list, pixel check)"].append(timed(checked).wall)
    base = min(best["Pillow, every plugin (baseline)"])
    print(f"{len(blobs)} images (the sample photos as JPEG and PNG), fastest of {args.repeat} rounds\n")
    for label, times in best.items():
        print(f"{label:<42} {min(times) * 1000 / len(blobs):7.2f} ms/image  {min(times) / base - 1:+6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
