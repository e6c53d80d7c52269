"""Order bias of the shadow engine's latency ratio: the same network under two names, both ways round.

A shadow run that always runs the old version first on each image lets the new one find the caches
warm: the same network then measures as a faster "new" version. The engine alternates which version
runs first. This benchmark shows the bias with and without that, in the same run:

* a project folder with ``faces@twin`` (``from = "faces@v1"``: the same files under another name);
* ``--rounds`` rounds; in each, ``run_shadow`` v1 -> twin and twin -> v1, once with a fixed order
  (old first: the baseline) and once alternating (the default);
* per mode: the p50 ratio's mean, standard deviation, min and max over all runs, and the share of
  runs whose ratio is under 1 (an unbiased engine gives about half).

Target: the alternating mean within 3% of 1.00. Exit 1 when it is missed.

Run from the repository root:  .venv/bin/python benchmarks/latency_bias.py [--rounds 15] [--count 40]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from common import build_folder

SIZES = (320, 416, 512, 640)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--count", type=int, default=40, help="images (JPEG copies of sample_images at 320-640 px)")
    args = parser.parse_args()

    from mldeploy.models import load_detector
    from mldeploy.pipeline import collect_inputs
    from mldeploy.project import Project
    from mldeploy.rollout.shadow import run_shadow

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "images").mkdir()
        build_folder(root / "images", SIZES, count=args.count)
        (root / "mldeploy.toml").write_text('[models.faces.twin]\nfrom = "faces@v1"\n')
        registry = Project(cwd=root, state_dir=root / ".mldeploy").registry()
        v1, twin = (load_detector(registry.resolve(ref)) for ref in ("faces@v1", "faces@twin"))
        images, _ = collect_inputs([str(root / "images")])
        ratios: dict[str, list[float]] = {"old first (baseline)": [], "alternating (default)": []}
        for n in range(args.rounds):
            for mode, alternate in (("old first (baseline)", False), ("alternating (default)", True)):
                for old, new in ((v1, twin), (twin, v1)):
                    run = run_shadow(images, old, new, alternate=alternate)
                    ratios[mode].append(run.summary.latency_ratio)
            print(f"  round {n + 1}/{args.rounds}", file=sys.stderr, end="\r")
    print(f"\nfaces@v1 vs the same network as faces@twin, both ways round, {args.rounds} rounds x 2, {args.count} images\n")
    print(f"{'engine order':<24} {'runs':>5} {'mean ratio':>11} {'sd':>7} {'min':>7} {'max':>7} {'runs < 1':>9}")
    for mode, values in ratios.items():
        below = sum(v < 1 for v in values) / len(values)
        print(f"{mode:<24} {len(values):>5} {statistics.mean(values):>11.3f} {statistics.stdev(values):>7.3f} {min(values):>7.3f} "
              f"{max(values):>7.3f} {below:>8.0%}")
    bias = abs(statistics.mean(ratios["alternating (default)"]) - 1)
    print(f"\nalternating: mean ratio off 1.00 by {bias:.1%} (target <= 3%)")
    return 0 if bias <= 0.03 else 1


if __name__ == "__main__":
    sys.exit(main())
