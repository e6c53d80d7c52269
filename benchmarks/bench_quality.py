"""How far ``mldeploy bench``'s figures can be trusted, on this machine. Four checks, each against its target:

1. **Repeatability**: the same candidate (faces@v1, 1 thread, 100 requests) benched three times; its p95 within 10%
   across the runs (spread = (max - min) / median).
2. **Memory**: the peak bench reports for a version against ``/usr/bin/time -v``'s maximum resident size
   of a process that does the same measurement (the same job, run directly under time); within 5%.
   The peak of ``mldeploy detect`` on the same images, under ``/usr/bin/time -v``, is printed beside it.
3. **Accuracy**: bench's mAP@0.5:0.95 against the sample labels equals ``mldeploy eval``'s (both
   versions).
4. **Overhead**: bench's wall time against the time its candidates' own measurements took (load, first
   inference, the timed passes); under 10% over.

Run from the repository root:  .venv/bin/python benchmarks/bench_quality.py [--requests 100]
Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile

from common import ENV, ROOT

IMAGES = str(ROOT / "sample_images")
LABELS = str(ROOT / "sample_images" / "labels" / "faces.json")


def mldeploy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mldeploy", *args], env=ENV, cwd=tempfile.gettempdir(), capture_output=True, text=True, check=False)


def bench(*args: str) -> dict:
    result = mldeploy("bench", IMAGES, "--format", "json", "--no-progress", *args)
    if result.returncode not in (0, 3):
        sys.exit(f"bench failed: {result.stderr}")
    return json.loads(result.stdout)


def max_rss_mb(command: list[str]) -> float:
    result = subprocess.run(["/usr/bin/time", "-v", *command], env=ENV, cwd=tempfile.gettempdir(), capture_output=True, text=True, check=True)
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1)) / 1024


_MEASURE = """
import json, sys
from mldeploy.models import default_registry
from mldeploy.pipeline import collect_inputs
from mldeploy.rollout.bench import Job, measure
images, _ = collect_inputs([{images!r}])
job = Job(default_registry().resolve({ref!r}), 1, (1,), tuple(images), {requests})
print(json.dumps({{"peak_mb": measure(job).peak_mb}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    missed = []
    requests = str(args.requests)

    print(f"1. repeatability: faces@v1, threads 1, {requests} requests, three runs")
    p95s = []
    for _ in range(3):
        row = bench("--versions", "v1", "--threads", "1", "--requests", requests)["candidates"][0]
        p95s.append(row["p95_ms"])
    spread = (max(p95s) - min(p95s)) / statistics.median(p95s)
    print(f"   p95 ms: {', '.join(f'{p:.1f}' for p in p95s)}; spread {spread:.1%} (target < 10%): {'OK' if spread < 0.10 else 'NOT MET'}")
    missed += [] if spread < 0.10 else ["repeatability"]

    print("2. memory: bench's peak against /usr/bin/time -v")
    for ref in ("faces@v1", "faces@v2"):
        code = _MEASURE.format(images=IMAGES, ref=ref, requests=args.requests)
        timed = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-c", code], env=ENV, capture_output=True, text=True, check=True)
        reported = json.loads(timed.stdout.strip().splitlines()[-1])["peak_mb"]
        external = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", timed.stderr).group(1)) / 1024
        from_bench = next(r for r in bench("--versions", ref, "--requests", requests)["candidates"] if r["version"] == ref)["peak_mb"]
        detect = max_rss_mb([sys.executable, "-m", "mldeploy", "detect", IMAGES, "-m", ref, "--format", "json"])
        off = abs(reported - external) / external
        print(f"   {ref}: measured {reported:.1f} MB, /usr/bin/time {external:.1f} MB ({off:.1%} apart, target < 5%: "
              f"{'OK' if off < 0.05 else 'NOT MET'}); bench's own run {from_bench:.1f} MB; mldeploy detect {detect:.1f} MB")
        missed += [] if off < 0.05 else [f"memory {ref}"]

    print("3. accuracy: bench --labels against mldeploy eval")
    doc = bench("--versions", "v1,v2", "--labels", LABELS, "--requests", "5")
    for row in doc["candidates"]:
        evaluated = json.loads(mldeploy("eval", IMAGES, "-m", row["version"], "--labels", LABELS, "--format", "json").stdout)["summary"]["map"]
        same = abs(row["map"] - evaluated) < 1e-4
        print(f"   {row['version']}: bench mAP {row['map']:.4f}, eval mAP {evaluated:.4f}: {'OK' if same else 'NOT MET'}")
        missed += [] if same else [f"accuracy {row['version']}"]

    print("4. overhead: bench's wall time over the candidates' measured time")
    doc = bench("--versions", "v1,v2", "--threads", "1,2", "--requests", requests)
    wall, measured = doc["seconds"]["wall"], doc["seconds"]["measured"]
    over = wall / measured - 1
    print(f"   wall {wall:.1f} s, measured {measured:.1f} s: {over:.1%} over (target < 10%): {'OK' if over < 0.10 else 'NOT MET'}")
    missed += [] if over < 0.10 else ["overhead"]

    print(f"\n{'every target met' if not missed else 'NOT MET: ' + ', '.join(missed)}")
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
