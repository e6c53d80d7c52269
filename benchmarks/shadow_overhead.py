"""Shadow overhead: what ``run_shadow`` over a folder costs beyond the two versions' bare ``detect`` runs.

The images are ``--images DIR`` (its first ``--count``), or by default ``--count`` (40) JPEG copies of
``sample_images/*.jpg`` at 320-768 px (longest side) in a temporary folder. For each ``--pairs``
OLD:NEW pair both models are loaded and warmed up with one call each before anything is timed, then
``--repeat`` rounds each run, in this order (the fastest of each measurement counts, so that other work
on the machine hurts every measurement alike):

* baseline: ``list(detect_images(images, old))`` and the same with new: wall time each, p50 latency;
* shadow, sequential (``workers=1``, the default) and parallel (``workers=2``): ``run_shadow`` wall
  time (summary included), its matching + summarising time (``run.compare_seconds``), the time to
  write the JSON and JUnit reports, and each version's p50 latency (parallel: both calls compete for
  the cores, which inflates per-call latency);
* the HTML report, timed separately and not counted as overhead: it re-reads and draws the
  disagreeing images, so its cost follows the disagreements, not the run.

Targets: overhead = (matching + summary + JSON/JUnit) / shadow wall < 2% in both modes, and sequential
shadow wall <= 1.10x (old detect + new detect). Exit status 1, naming the target, when one is missed.

Run from the repository root:  .venv/bin/python benchmarks/shadow_overhead.py [--count 40] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from common import build_folder, timed

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
PAIRS = "faces@v1:faces@v2,faces@v1:faces-haar@default"
SIZES = (320, 384, 448, 512, 576, 640, 704, 768)  # longest side, pixels
MODES = ((1, "sequential"), (2, "parallel"))


def measure(pair: str, images, repeat: int, registry, out: Path) -> dict:
    from mldeploy.images import read_image
    from mldeploy.models import load_detector
    from mldeploy.rollout.engines.local import detect_images
    from mldeploy.report.html import write_html
    from mldeploy.report.json_junit import write_json, write_junit
    from mldeploy.rollout.rehearsal import Report
    from mldeploy.rollout.gates import evaluate, resolve_bounds
    from mldeploy.rollout.shadow import run_shadow

    old, new = (load_detector(registry.resolve(ref.strip())) for ref in pair.split(":"))
    first = read_image(images[0].path)
    for detector in (old, new):
        detector.detect(first)  # warm-up: first-call costs stay out of every figure
    runs: dict[str, list] = {k: [] for k in ("old", "new", "sequential", "parallel")}
    reports: dict[str, list] = {"sequential": [], "parallel": []}
    html: list[float] = []
    for _ in range(repeat):
        runs["old"].append(timed(lambda: list(detect_images(images, old))))
        runs["new"].append(timed(lambda: list(detect_images(images, new))))
        for workers, mode in MODES:
            shadow = timed(lambda: run_shadow(images, old, new, iou_threshold=0.5, workers=workers, warm_up=False))
            runs[mode].append(shadow)
            run = shadow.result
            doc = Report("shadow", run.records, run.summary, evaluate(run.summary, resolve_bounds({}, {})), {})
            reports[mode].append(timed(lambda: (write_json(out / "shadow.json", doc), write_junit(out / "shadow.xml", doc))).wall)
            if workers == 1:
                html.append(timed(lambda: write_html(out / "html", doc)).wall)
    best = {k: min(v, key=lambda t: t.wall) for k, v in runs.items()}
    f = {"pair": pair, "html": min(html), "problems": []}
    for side in ("old", "new"):
        wall, results = best[side].wall, best[side].result
        f[side] = {"wall": wall, "p50": statistics.median(r.seconds for r in results if r.ok)}
        boxes = sum(len(r.detections) for r in results if r.ok)
        for _, mode in MODES:
            run = best[mode].result
            shadow_boxes = sum(len(getattr(r, side).detections) for r in run.records if getattr(r, side).ok)
            if shadow_boxes != boxes:
                f["problems"].append(f"{mode} shadow: {side} version found {shadow_boxes} boxes, bare detect {boxes}")
    for _, mode in MODES:
        run = best[mode].result
        f[mode] = {"wall": best[mode].wall, "compare": min(t.result.compare_seconds for t in runs[mode]), "reports": min(reports[mode]),
                   "old_p50": run.summary.old_latency.p50, "new_p50": run.summary.new_latency.p50,
                   "disagreeing": run.summary.agreement.disagreeing_images}
    return f


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, help="folder of images to use instead of the generated one")
    parser.add_argument("--count", type=int, default=40, help="images to generate, or to take from --images (default 40)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the fastest of each measurement counts (default 3)")
    parser.add_argument("--pairs", default=PAIRS, help=f"OLD:NEW pairs, comma separated (default {PAIRS})")
    args = parser.parse_args()

    from mldeploy.pipeline import collect_inputs
    from mldeploy.project import Project

    missed, problems = [], []
    with tempfile.TemporaryDirectory(prefix="mldeploy-bench-") as tmp:
        tmp = Path(tmp)
        folder = args.images
        if folder is None:
            folder = tmp / "images"
            folder.mkdir()
            build_folder(folder, SIZES, count=args.count)
        images = collect_inputs([str(folder)])[0][: args.count]
        if not images:
            sys.exit(f"no images in {folder}")
        registry = Project(state_dir=tmp / "state").registry()
        print(f"{len(images)} images from {folder if args.images else 'sample_images/'}, {os.cpu_count()} CPUs, best of {args.repeat}\n")
        head = (f"{'pair (old:new)':<28} {'run':<11} {'wall s':>7} {'/ 2 detects':>11} {'match ms':>9} {'json+junit ms':>13}"
                f" {'overhead':>9} {'(< 2%)':>6} {'p50 old ms':>10} {'p50 new ms':>10}")
        print(head + "\n" + "-" * len(head))
        for pair in args.pairs.split(","):
            print(f"  measuring {pair} ...", file=sys.stderr, flush=True)
            f = measure(pair, images, args.repeat, registry, tmp)
            both = f["old"]["wall"] + f["new"]["wall"]
            for side in ("old", "new"):
                p50 = [f"{f[side]['p50'] * 1000:.1f}" if s == side else "-" for s in ("old", "new")]
                print(f"{pair if side == 'old' else '':<28} {'detect ' + side:<11} {f[side]['wall']:>7.2f} {'':>11} {'':>9} {'':>13}"
                      f" {'':>9} {'':>6} {p50[0]:>10} {p50[1]:>10}")
            for _, mode in MODES:
                s = f[mode]
                overhead = (s["compare"] + s["reports"]) / s["wall"]
                ok = "ok" if overhead < 0.02 else "MISS"
                print(f"{'':<28} {mode:<11} {s['wall']:>7.2f} {s['wall'] / both:>10.2f}x {s['compare'] * 1000:>9.1f} {s['reports'] * 1000:>13.1f}"
                      f" {overhead * 100:>8.2f}% {ok:>6} {s['old_p50'] * 1000:>10.1f} {s['new_p50'] * 1000:>10.1f}")
                if overhead >= 0.02:
                    missed.append(f"{pair} {mode}: matching + reports take {overhead * 100:.2f}% of the shadow run (target < 2%)")
            seq, par = f["sequential"]["wall"], f["parallel"]["wall"]
            print(f"{'':<28} sequential / 2 detects {seq / both:.2f}x (target <= 1.10x), parallel speed-up over 2 detects {both / par:.2f}x,"
                  f" HTML report {f['html'] * 1000:.0f} ms ({f['sequential']['disagreeing']} disagreeing images, not counted)\n")
            if seq > 1.10 * both:
                missed.append(f"{pair}: sequential shadow takes {seq / both:.2f}x the two bare detect runs (target <= 1.10x)")
            problems += [f"{pair}: {p}" for p in f["problems"]]
    print("overhead = (matching + summary + JSON/JUnit writing) / shadow wall; p50 = median per-call model latency.")
    print("the models were warmed up before anything was timed, so run_shadow runs without its own warm-up (warm_up=False).")
    for line in problems:
        print(f"WARNING {line}")
    for line in missed:
        print(f"MISSED: {line}")
    print("all targets met" if not missed else f"{len(missed)} target(s) missed")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
