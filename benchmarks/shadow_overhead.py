"""Shadow overhead: what a shadow run costs beyond the two versions' own detect runs.

A temporary folder is filled with JPEG copies of ``sample_images/*.jpg`` at 8 sizes (longest side
320-1280 px: 40 images; ``--quick``: 3 sizes, 15 images). For each pair of versions, with both
models loaded and warmed up first:

* baseline: ``detect_images`` over the folder with the old version, then with the new one (what two
  bare ``mldeploy detect`` runs do after start-up), wall time of each;
* shadow, sequential (``workers=1``) and parallel (``workers=2``, the default): ``run_shadow`` over the
  same folder, wall time, and inside it the time spent matching and summarising;
* reports: writing the JSON and JUnit reports of the run (the HTML report, which re-reads and draws
  the disagreeing images, is timed separately and not counted as overhead).

Targets: matching + summary + JSON/JUnit reports under 2% of the shadow run's wall time, and a
sequential shadow run no slower than 1.10x the two bare detect runs. Each figure is the fastest of
``--repeats`` runs. Exit status 1 when a target is missed.

Run from the repository root:  .venv/bin/python benchmarks/shadow_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PAIRS = ["faces@v1:faces-haar@default", "faces@v1:faces@v2"]
SIZES = (320, 480, 640, 768, 896, 1024, 1152, 1280)
QUICK_SIZES = (320, 640, 1024)


def build_folder(folder: Path, sizes) -> None:
    from PIL import Image

    for photo in sorted((ROOT / "sample_images").glob("*.jpg")):
        with Image.open(photo) as img:
            img = img.convert("RGB")
            for side in sizes:
                scale = side / max(img.size)
                img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS).save(folder / f"{photo.stem}_{side}.jpg", quality=90)


def best(fn, repeats: int):
    """(fastest wall seconds, result of that run)."""
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        runs.append((time.perf_counter() - started, result))
    return min(runs, key=lambda r: r[0])


def measure(pair: str, images, repeats: int, out: Path) -> dict:
    from mldeploy.models import load_detector
    from mldeploy.pipeline import detect_images
    from mldeploy.project import Project
    from mldeploy.reports import Report, write_html, write_json, write_junit
    from mldeploy.rollout.gates import evaluate, resolve_bounds
    from mldeploy.rollout.shadow import run_shadow

    registry = Project(state_dir=out / "state").registry(with_live=False)
    old, new = (load_detector(registry.resolve(ref)) for ref in pair.split(":"))
    for detector in (old, new):
        detector.detect(__import__("mldeploy.images", fromlist=["read_image"]).read_image(images[0].path))  # warm up
    old_wall, _ = best(lambda: list(detect_images(images, old)), repeats)
    new_wall, _ = best(lambda: list(detect_images(images, new)), repeats)
    figures = {"pair": pair, "images": len(images), "old_detect": old_wall, "new_detect": new_wall}
    for workers in (1, 2):
        wall, run = best(lambda: run_shadow(images, old, new, workers=workers), repeats)
        doc = Report("shadow", run.records, run.summary, evaluate(run.summary, resolve_bounds({})), {})
        report_s, _ = best(lambda: (write_json(out / "r.json", doc), write_junit(out / "j.xml", doc)), repeats)
        html_s, _ = best(lambda: write_html(out / "html", doc), 1)
        figures[workers] = {"wall": wall, "compare": run.compare_seconds, "reports": report_s, "html": html_s,
                            "old_p50": run.summary.old_latency.p50, "new_p50": run.summary.new_latency.p50,
                            "disagreeing": run.summary.agreement.disagreeing_images}
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="15 images instead of 40")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", default=",".join(PAIRS), help="OLD:NEW pairs, comma separated")
    args = parser.parse_args()
    from mldeploy.pipeline import collect_inputs

    missed = []
    with tempfile.TemporaryDirectory(prefix="mldeploy-bench-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        build_folder(folder, QUICK_SIZES if args.quick else SIZES)
        images, _ = collect_inputs([str(folder)])
        print(f"{len(images)} images, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, best of {args.repeats}\n")
        header = f"{'pair':<32} {'mode':<10} {'wall s':>7} {'vs 2 detects':>12} {'match+sum ms':>12} {'reports ms':>10} {'overhead':>9} {'html ms':>8} {'p50 old/new ms':>15}"
        print(header)
        print("-" * len(header))
        for pair in args.pairs.split(","):
            f = measure(pair, images, args.repeats, Path(tmp))
            both = f["old_detect"] + f["new_detect"]
            print(f"{pair:<32} {'detect':<10} {both:>7.2f} {'1.00x':>12} {'':>12} {'':>10} {'':>9} {'':>8} "
                  f"{f['old_detect'] / len(images) * 1000:>6.1f}/{f['new_detect'] / len(images) * 1000:<8.1f}")
            for workers, mode in ((1, "sequential"), (2, "parallel")):
                s = f[workers]
                overhead = (s["compare"] + s["reports"]) / s["wall"]
                print(f"{'':<32} {mode:<10} {s['wall']:>7.2f} {s['wall'] / both:>11.2f}x {s['compare'] * 1000:>12.1f} {s['reports'] * 1000:>10.1f} "
                      f"{overhead * 100:>8.2f}% {s['html'] * 1000:>8.0f} {s['old_p50'] * 1000:>6.1f}/{s['new_p50'] * 1000:<8.1f}")
                if overhead >= 0.02:
                    missed.append(f"{pair} {mode}: matching and reports take {overhead * 100:.2f}% of the run (target < 2%)")
            if f[1]["wall"] > 1.10 * both:
                missed.append(f"{pair}: sequential shadow takes {f[1]['wall'] / both:.2f}x the two detect runs (target <= 1.10x)")
    print("\ndetect: the two bare runs (p50 column: mean ms per image); overhead = (matching + summary + JSON/JUnit) / shadow wall.")
    print("html is not counted: it re-reads and draws only the disagreeing images.")
    for line in missed:
        print(f"MISSED: {line}")
    if not missed:
        print("all targets met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
