"""A replay's driver memory against the number of images: it should stay flat from 10^3 to 10^5.

Small synthetic images (64x64 JPEG crops of the sample photos, around their faces or of background, each
at another offset or scale) in folders of 1000 are listed in a manifest and replayed with ``mldeploy
shadow --old faces-haar@default --new faces-haar@alt2 --records DIR`` (two Haar cascades: cheap enough for
10^5 images on two cores, and they disagree on a few crops, so the most-disagreeing heap and, with a
truncated file every 997 images, the error path are exercised), each size in a fresh process. The figure is the driver's own peak resident memory (``VmHWM``), read while it runs:
Ray's workers are other processes. The baseline is the smallest run, in the same invocation. What may
grow is the list of image names, one string an image (here the manifest's lines joined to its folder,
about 75 characters), while the replay itself keeps nothing per image: the largest run's peak may
exceed the baseline's by at most ``--bytes-per-image`` (200) times the extra images, else the script
exits 1. Before the streaming summary a run kept every image's record, and its list of ImageInput
objects took about 600 bytes an image on its own.

Run from the repository root:
    .venv/bin/python benchmarks/replay_memory.py [--sizes 1000,10000,100000] [--ray-sizes 1000,10000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from common import ROOT

ENV = {**common.ENV, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
SIDE = 64


#: The labelled faces of the sample photos (x, y, w, h): two crops in five are around a face, so the two
#: cascades find some and disagree on a few (measured: 8 in 300), the rest are background.
FACES = (("astronaut.jpg", (168, 62, 107, 120)), ("camera.jpg", (183, 110, 73, 88)))
BACKGROUNDS = ("chelsea.jpg", "coffee.jpg", "rocket.jpg")


def build(folder: Path, count: int) -> None:
    """``count`` distinct 64x64 JPEG crops of the sample photos, 1000 to a folder; every 997th is truncated
    (an unreadable image: a counted error row)."""
    import io

    from PIL import Image

    open_rgb = lambda name: Image.open(ROOT / "sample_images" / name).convert("RGB")  # noqa: E731
    faces = [(open_rgb(name), box) for name, box in FACES]
    backgrounds = [open_rgb(name) for name in BACKGROUNDS]
    for n in range(count):
        step, kind = divmod(n, 5)
        if kind < 2:
            photo, (x, y, w, h) = faces[kind]
            m = max(w, h) * (1.3 + (step % 7) * 0.1)
            cx, cy = x + w / 2 + (step % 5 - 2) * 4, y + h / 2 + (step % 3 - 1) * 4 + (step // 105) % 3
            crop = photo.crop((int(cx - m / 2), int(cy - m / 2), int(cx + m / 2), int(cy + m / 2)))
        else:
            photo = backgrounds[kind - 2]
            x, y = (step * 7) % (photo.width - 2 * SIDE), (step * 11) % (photo.height - 2 * SIDE)
            crop = photo.crop((x, y, x + 2 * SIDE, y + 2 * SIDE))
        sub = folder / f"part-{n // 1000:04d}"
        if n % 1000 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        data = io.BytesIO()
        crop.resize((SIDE, SIDE)).save(data, "JPEG", quality=85)
        (sub / f"{n:07d}.jpg").write_bytes(data.getvalue()[: 300 if n % 997 == 996 else None])


def run(work: Path, folder: Path, records: Path, *extra: str) -> dict:
    command = [sys.executable, "-m", "mldeploy", "shadow", str(folder), "--old", "faces-haar@default", "--new", "faces-haar@alt2",
               "--gates", "none", "--format", "json", "--no-progress", "--records", str(records), *extra]
    run = common.run_measuring_peak(command, work, ENV)
    if run.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed ({run.returncode}):\n{run.stderr[-2000:]}")
    report = json.loads(run.stdout)
    with open(records / "records.jsonl", encoding="utf-8") as fh:
        rows = sum(1 for _ in fh)
    s = report["summary"]
    return {"wall": run.wall, "peak_mb": run.peak_mb, "images": s["images"], "rows": rows, "disagreeing": s["disagreeing_images"],
            "listed": report["images_listed"]["listed"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="local engine: image counts, smallest first (the baseline)")
    parser.add_argument("--ray-sizes", default="1000,10000", help="Ray engine: image counts ('' to skip)")
    parser.add_argument("--bytes-per-image", type=float, default=200, help="growth of the peak per extra image, at most")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",") if n]
    ray_sizes = [int(n) for n in args.ray_sizes.split(",") if n]
    ok = True
    with tempfile.TemporaryDirectory(prefix="mldeploy-memory-bench-") as tmp:
        work = Path(tmp)
        folder = work / "images"
        largest = max(sizes + ray_sizes)
        started = time.perf_counter()
        build(folder, largest)
        print(f"{os.cpu_count()} CPUs; {largest} images of {SIDE}x{SIDE} written in {time.perf_counter() - started:.0f} s; "
              "faces-haar@default against faces-haar@alt2\n")
        print(f"{'engine':<8} {'images':>8} {'images/s':>9} {'driver peak MB':>15} {'disagreeing':>12} {'listed':>7} {'rows':>8}")
        for engine, counts, extra in (("local", sizes, ()), ("ray", ray_sizes, ("--engine", "ray"))):
            peaks = []
            for count in counts:
                subset = work / f"set-{count}"
                subset.mkdir()
                (subset / "manifest.txt").write_text("".join(f"../images/part-{n // 1000:04d}/{n:07d}.jpg\n" for n in range(count)))
                r = run(work, f"@{subset / 'manifest.txt'}", subset / f"rows-{engine}", *extra)
                ok &= r["rows"] == r["images"] == count
                peaks.append(r["peak_mb"])
                print(f"{engine:<8} {count:>8} {count / r['wall']:>9.0f} {r['peak_mb']:>15.0f} {r['disagreeing']:>12} {r['listed']:>7} {r['rows']:>8}")
                subprocess.run(["rm", "-rf", str(subset)], check=True)
            if len(peaks) > 1:
                per_image = (peaks[-1] - peaks[0]) * 2**20 / (counts[-1] - counts[0])
                verdict = "flat but for the names" if per_image <= args.bytes_per_image else "GROWS"
                ok &= per_image <= args.bytes_per_image
                print(f"{engine}: driver peak {peaks[0]:.0f} MB at {counts[0]} images -> {peaks[-1]:.0f} MB at {counts[-1]}: "
                      f"{per_image:.0f} bytes an extra image ({verdict}; at most {args.bytes_per_image:.0f})\n")
    print("every image has exactly one row in --records" if ok else "FAILED: see above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
