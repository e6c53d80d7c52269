"""A tiny but real Darknet YOLO network, written by the tests, whose output is known.

One 1x1 convolution and a [yolo] layer over a 32x32 input: every grid cell whose input pixel is red
reports an object of class 0 (objectness and class-0 logits are ``20 * R - 10``), centred on the cell,
a quarter of the image wide and high (anchor 8x8 on a 32x32 input). Other colours report nothing.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


def write_tiny_yolo(folder: Path, stem: str, classes: int, names: list[str] | None = None, shift: float = 0.0, blind: bool = False,
                    padding: int = 0, width: int = 96) -> dict[str, Path]:
    """Write ``stem.cfg`` / ``stem.weights`` (and ``stem.names``). ``shift`` (a logit) moves every box's
    centre right by up to half a grid cell: a planted localisation regression. ``blind`` finds nothing.

    ``padding`` inserts that many zero-weight residual blocks before the detector (an identity 1x1
    convolution, then per block a 3x3 convolution to ``width`` channels and a 1x1 back to 3, both all
    zeros, added to their input by a shortcut): the answers are exactly the same, each call is slower.
    """
    folder.mkdir(parents=True, exist_ok=True)
    filters = 5 + classes
    cfg = folder / f"{stem}.cfg"
    layers, blobs = [], []
    if padding:
        layers.append("[convolutional]\nsize=1\nstride=1\npad=0\nfilters=3\nactivation=linear\n")
        blobs += [np.zeros(3, np.float32), np.eye(3, dtype=np.float32)]
        for _ in range(padding):
            layers.append(f"[convolutional]\nsize=3\nstride=1\npad=1\nfilters={width}\nactivation=linear\n")
            layers.append("[convolutional]\nsize=1\nstride=1\npad=0\nfilters=3\nactivation=linear\n")
            layers.append("[shortcut]\nfrom=-3\nactivation=linear\n")
            blobs += [np.zeros(width, np.float32), np.zeros((width, 3, 3, 3), np.float32), np.zeros(3, np.float32), np.zeros((3, width), np.float32)]
    cfg.write_text(
        "[net]\nwidth=32\nheight=32\nchannels=3\n\n" + "\n".join(layers) + ("\n" if layers else "")
        + f"[convolutional]\nsize=1\nstride=1\npad=0\nfilters={filters}\nactivation=linear\n\n"
        f"[yolo]\nmask=0\nanchors=8,8\nclasses={classes}\nnum=1\n"
    )
    bias = np.zeros(filters, np.float32)
    weight = np.zeros((filters, 3), np.float32)  # (filter, input channel R,G,B after swapRB)
    bias[4:] = -10.0  # objectness and every class: off
    weight[4, 0] = weight[5, 0] = 0.0 if blind else 20.0  # ...unless the pixel is red: objectness and class 0 on
    bias[0] = shift  # x offset logit: sigmoid(0) = 0.5 is the cell centre
    weights = folder / f"{stem}.weights"
    with open(weights, "wb") as fh:
        fh.write(struct.pack("<iiiq", 0, 2, 0, 0))  # major, minor, revision, images seen
        for blob in blobs:  # the padding's convolutions, each bias then weights
            fh.write(blob.tobytes())
        fh.write(bias.tobytes())
        fh.write(weight.tobytes())
    files = {"cfg": cfg, "weights": weights}
    if names is not None:
        files["names"] = folder / f"{stem}.names"
        files["names"].write_text("\n".join(names) + "\n")
    return files


def red_square_image(size: int = 320, square: tuple[int, int, int, int] = (96, 96, 192, 192)) -> np.ndarray:
    """Black BGR image with a red square at ``x1, y1, x2, y2``."""
    image = np.zeros((size, size, 3), np.uint8)
    x1, y1, x2, y2 = square
    image[y1:y2, x1:x2] = (0, 0, 255)
    return image
