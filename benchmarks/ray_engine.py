"""The Ray engine against the local one: images a second and the driver's peak memory, on the same set.

A folder of N JPEG copies of the sample photos (resized, so no two files are the same) is replayed
with ``mldeploy shadow --old v1 --new v1-copy`` (faces@v1 twice: the same work on both sides), once on
the local engine and on the Ray engine with 1 and 2 actors, each in a fresh process, so that the
peak resident memory of the driver (``ru_maxrss`` of the child) is the run's own. Ray's start-up
(a local cluster for the run, the actors loading the models) is part of the figures, as a user pays
for it.

Run from the repository root:  .venv/bin/python benchmarks/ray_engine.py [--images N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import common
from common import ROOT

ENV = {**common.ENV, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}


def run(work: Path, folder: Path, *extra: str) -> dict:
    command = [sys.executable, "-m", "mldeploy", "shadow", str(folder), "--old", "v1", "--new", "v1-copy", "--gates", "none",
               "--format", "json", "--no-progress", *extra]
    run = common.run_measuring_peak(command, work, ENV)
    if run.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed ({run.returncode}):\n{run.stderr[-2000:]}")
    report = json.loads(run.stdout)
    return {"wall": run.wall, "peak_mb": run.peak_mb, "compared": report["summary"]["compared"], "matched": report["summary"]["boxes"]["matched"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mldeploy-ray-bench-") as tmp:
        work = Path(tmp)
        (work / "mldeploy.toml").write_text('[models.faces.v1-copy]\nfrom = "faces@v1"\n')
        folder = work / "images"
        folder.mkdir()
        common.build_folder(folder, [320, 400, 480, 560, 640], count=args.images)
        print(f"{os.cpu_count()} CPUs; {args.images} images, faces@v1 against itself under another name\n")
        print(f"{'engine':<22} {'images/s':>9} {'wall s':>8} {'driver peak MB':>15} {'compared':>9}")
        rows = {}
        for label, extra in (("local", ()), ("ray, 1 actor", ("--engine", "ray", "--actors", "1", "--actor-cpus", "0.5")),
                             ("ray, 2 actors", ("--engine", "ray", "--actors", "2", "--actor-cpus", "0.5"))):
            r = run(work, folder, *extra)
            rows[label] = r
            print(f"{label:<22} {args.images / r['wall']:>9.1f} {r['wall']:>8.1f} {r['peak_mb']:>15.0f} {r['compared']:>9}")
        same = len({(r["compared"], r["matched"]) for r in rows.values()}) == 1
        print(f"\nthe same images compared and boxes matched on every engine: {'yes' if same else 'NO'}")
        print(f"ray with 2 actors vs local: {rows['local']['wall'] / rows['ray, 2 actors']['wall']:.2f}x the throughput")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
