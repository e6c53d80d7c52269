"""Closing the loop at scale: joining late labels to 100 000 captured requests, and drift over them,
against the time inference on those requests would take (the target: each well under it).

1. A capture of N requests (distinct 64x48 PNGs; each answer 0-4 boxes) is built directly with the
   capture store (not timed against anything: it is the server's work, spread over the traffic).
2. **Join**: `mldeploy capture label` on a COCO file naming every other request by its request id
   (N/2 entries): the labels read, matched and written in one transaction. Timed in this process.
3. **Drift**: `mldeploy drift --capture` over the whole capture, the older half against the newer:
   every recorded answer parsed, and every image decoded for its size and brightness.
4. **Inference**: faces@v1 (the embedded default) on 300 of the same images, per image, times N.

Run from the repository root:  .venv/bin/python benchmarks/close_the_loop.py [--requests 100000]
Exits 1 when the join or the drift takes a tenth of the inference time or more.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ENV, ROOT

sys.path.insert(0, str(ROOT))


def build(folder: Path, n: int) -> None:
    import cv2
    import numpy as np

    from mldeploy.capture import CaptureStore
    from mldeploy.detections import Detections

    rng = np.random.default_rng(0)
    store = CaptureStore(folder, 1 << 40)
    try:
        for i in range(n):
            image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            if i >= n // 2:
                image //= 2  # the newer half is darker: the drift has something to find
            png = cv2.imencode(".png", image)[1].tobytes()
            k = int(rng.integers(0, 5))
            xy = rng.uniform(0, 24, (k, 2))
            boxes = np.hstack([xy, xy + rng.uniform(4, 20, (k, 2))])  # inside 64 x 48
            answer = Detections(boxes, rng.uniform(0.5, 1, k), [0] * k, ["face"] * k, (64, 48))
            store.add(png, "faces", "v1", "live", answer, 0.01, request_id=f"r{i}",
                      captured_at=f"2026-11-{1 + 20 * i // n:02d}T00:00:00.{i % 1000000:06d}+00:00")
    finally:
        store.close()


def labels_file(path: Path, n: int) -> None:
    images = [{"id": i + 1, "file_name": f"r{i}.png", "width": 64, "height": 48} for i in range(0, n, 2)]
    annotations = [{"id": j + 1, "image_id": img["id"], "category_id": 1, "bbox": [5, 5, 10, 10], "area": 100, "iscrowd": 0}
                   for j, img in enumerate(images)]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "face"}]}))


def inference_per_image(folder: Path, sample: int = 300) -> float:
    from mldeploy.capture import CaptureStore
    from mldeploy.images import decode_image
    from mldeploy.models import load_detector
    from mldeploy.models.registry import default_registry

    detector = load_detector(default_registry().resolve("faces@v1"))
    store = CaptureStore(folder, write=False)
    try:
        records = store.records(limit=sample)
        images = [decode_image(store.read_blob(r)) for r in records]
    finally:
        store.close()
    detector.detect(images[0])
    started = time.perf_counter()
    for image in images:
        detector.detect(image)
    return (time.perf_counter() - started) / len(images)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100_000)
    args = parser.parse_args()
    n = args.requests
    work = Path(tempfile.mkdtemp(prefix="mldeploy-loop-"))
    cap = work / "cap"
    started = time.perf_counter()
    build(cap, n)
    print(f"built a capture of {n} requests in {time.perf_counter() - started:.1f} s")
    labels = work / "labels.json"
    labels_file(labels, n)

    from mldeploy.capture import CaptureStore
    from mldeploy.capture.truth import attach_labels
    from mldeploy.truth.labels import load_labels

    started = time.perf_counter()
    store = CaptureStore(cap)
    done = attach_labels(store, load_labels(labels))
    store.close()
    join = time.perf_counter() - started
    assert done.matched == (n + 1) // 2, done
    print(f"join: {done.matched} labels attached by request id in {join:.2f} s")

    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "mldeploy", "drift", "--capture", str(cap), "-m", "faces", "--no-progress", "--format", "json"],
                         env=ENV, cwd=work, capture_output=True, text=True, check=False)
    drift = time.perf_counter() - started
    doc = json.loads(run.stdout)
    brightness = next(f["psi"] for f in doc["features"] if f["feature"] == "brightness")
    print(f"drift: over {n} requests (answers and inputs) in {drift:.2f} s, the command included; exit {run.returncode}, brightness PSI {brightness:.2f}")

    per_image = inference_per_image(cap)
    inference = per_image * n
    print(f"inference: faces@v1 {per_image * 1000:.1f} ms an image, {inference:.0f} s for {n} requests")
    failed = False
    for name, seconds in (("join", join), ("drift", drift)):
        ratio = seconds / inference
        ok = ratio < 0.1
        failed |= not ok
        print(f"{name}: {ratio:.2%} of the inference time ({'met' if ok else 'MISSED'}: under 10%)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
