"""Detection throughput: bare model vs. the ``detect_images`` pipeline vs. the ``mldeploy detect`` CLI.

A temporary folder is filled with JPEG copies of ``sample_images/*.jpg`` resized to 8 sizes (longest
side 320-1280 px: 40 images; ``--quick``: 3 sizes, 15 images). Each offline model (objects@* is
skipped, saying so, when its weight files are absent) is measured in a fresh worker process, so that
one model's libraries and thread pools (TensorFlow's) cannot slow the next:

* decode: ``read_image`` over every file, sequentially (context for the overhead);
* raw (the baseline): every image decoded into memory first, detector loaded once and warmed up with
  one call, then ``detector._predict(image, spec.conf)`` over all images in a plain loop;
* pipeline: ``list(detect_images(inputs, detector))`` over the folder with the same loaded detector:
  decoding from disk on its thread pool + inference + result handling.
  Overhead % = (pipeline - raw) / raw, target < 10%. raw and pipeline alternate ``--repeats`` times
  and the fastest of each counts. "cores busy" = process CPU time (all threads) / wall time;
* CLI: ``mldeploy detect FOLDER --model M --format json --no-progress`` as a subprocess, end to end
  (start-up, model load, detection, JSON output): wall time, images/s and peak RSS. The peak is read
  with ``os.wait4`` by a tiny launcher process, because Linux carries the RSS of the process that
  forked a child into the child's ``ru_maxrss``; ``python -c pass`` through the same launcher is
  the baseline.

Run from the repository root:  .venv/bin/python benchmarks/detect_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ENV, build_folder, mldeploy_command, timed

MODELS = ["faces@v1", "faces@v2", "faces-haar@default", "people@hog", "cats@haar"]
SIZES = (320, 480, 640, 768, 896, 1024, 1152, 1280)  # longest side, pixels
QUICK_SIZES = (320, 640, 1024)

# Runs argv[2:], writes "peak-RSS-KiB wall-seconds" to argv[1], exits with the child's status.
LAUNCHER = (
    "import os, sys, time; t = time.perf_counter(); pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ); "
    "_, status, usage = os.wait4(pid, 0); open(sys.argv[1], 'w').write(f'{usage.ru_maxrss} {time.perf_counter() - t}'); "
    "sys.exit(os.waitstatus_to_exitcode(status))"
)


def worker(ref: str, folder: str, repeats: int) -> None:
    """In-process measurements of one model; prints one JSON line."""
    from mldeploy.images import read_image
    from mldeploy.models import default_registry, load_detector
    from mldeploy.pipeline import collect_inputs
    from mldeploy.rollout.engines.local import detect_images

    inputs, _ = collect_inputs([folder])
    decoding = timed(lambda: [read_image(item.path) for item in inputs])
    images, decode_s = decoding.result, decoding.wall
    spec = default_registry().resolve(ref)
    detector = load_detector(spec)
    detector._predict(images[0], spec.conf)  # warm-up
    raw, pipe = [], []
    for _ in range(repeats):
        raw.append(timed(lambda: [detector._predict(image, spec.conf) for image in images]))
        pipe.append(timed(lambda: list(detect_images(inputs, detector))))
    best_raw, best_pipe = min(raw, key=lambda t: t.wall), min(pipe, key=lambda t: t.wall)
    raw_out, raw_s, raw_cpu = best_raw.result, best_raw.wall, best_raw.cpu
    results, pipe_s, pipe_cpu = best_pipe.result, best_pipe.wall, best_pipe.cpu
    print(json.dumps({
        "images": len(images),
        "megapixels": sum(im.shape[0] * im.shape[1] for im in images) / 1e6,
        "decode_s": decode_s, "raw_s": raw_s, "raw_cpu": raw_cpu, "pipe_s": pipe_s, "pipe_cpu": pipe_cpu,
        "raw_found": sum(len(d.filter(min_confidence=spec.conf)) for d in raw_out),
        "pipe_found": sum(len(r.detections) for r in results if r.ok),
        "pipe_failed": sum(not r.ok for r in results),
    }))


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
    return proc


def run_measured(cmd: list[str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """(finished process, wall seconds, peak RSS in MB) of ``cmd``, via the launcher."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as report:
        proc = run([sys.executable, "-c", LAUNCHER, report.name, *cmd])
        kib, wall = report.read().split()
    return proc, float(wall), int(kib) / 1024  # ru_maxrss is in KiB on Linux


def bench_model(ref: str, folder: Path, repeats: int) -> dict:
    proc = run([sys.executable, __file__, "--worker", ref, str(folder), "--repeats", str(repeats)])
    proc.check_returncode()
    w = json.loads(proc.stdout.strip().splitlines()[-1])
    cli_proc, cli_s, cli_mb = run_measured(mldeploy_command() + ["detect", str(folder), "--model", ref, "--format", "json", "--no-progress"])
    cli = json.loads(cli_proc.stdout)["summary"] if cli_proc.returncode == 0 else {}
    n, found = w["images"], w["raw_found"]
    checks = {
        f"pipeline failed on {w['pipe_failed']} images": w["pipe_failed"],
        f"pipeline found {w['pipe_found']} boxes, raw loop {found}": w["pipe_found"] != found,
        f"CLI exit code {cli_proc.returncode}": cli_proc.returncode != 0,
        f"CLI processed {cli.get('succeeded')} of {n} images": cli.get("succeeded") != n,
        f"CLI found {cli.get('detections')} boxes, raw loop {found}": cli.get("detections") != found,
    }
    return {
        **w,
        "model": ref,
        "cli_s": cli_s,
        "cli_mb": cli_mb,
        "problems": [text for text, bad in checks.items() if bad],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{len(QUICK_SIZES)} sizes per photo instead of {len(SIZES)}, 1 repeat")
    parser.add_argument("--repeats", type=int, default=None, help="raw/pipeline alternations per model, fastest counts (default 2, --quick 1)")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 2)
    if args.worker:
        return worker(*args.worker, repeats)

    from mldeploy.models import default_registry

    models = list(MODELS)
    for spec in default_registry().versions("objects"):
        if spec.missing_files():
            print(f"skipping {spec.ref}: weight files absent ({', '.join(p.name for p in spec.missing_files())})")
        else:
            models.append(spec.ref)

    cores = os.cpu_count()
    with tempfile.TemporaryDirectory(prefix="mldeploy-bench-") as tmp:
        folder = Path(tmp)
        build_folder(folder, QUICK_SIZES if args.quick else SIZES)
        _, base_s, base_mb = run_measured([sys.executable, "-c", "pass"])
        rows = []
        for ref in models:
            print(f"  measuring {ref} ...", file=sys.stderr, flush=True)
            rows.append(bench_model(ref, folder, repeats))

    n = rows[0]["images"]
    print(f"{n} JPEG images (mean {rows[0]['megapixels'] / n:.2f} MP), {cores} CPUs, raw/pipeline best of {repeats}\n")
    head = (
        f"{'model':<19} {'raw img/s':>9} {'pipeline img/s':>14} {'overhead %':>10} {'(target)':>10} {'decode % of raw':>15}"
        f" {'cores busy raw/pipe':>19} {'CLI wall s':>10} {'CLI img/s':>9} {'CLI peak MB':>11} {'boxes':>5}"
    )
    print(head + "\n" + "-" * len(head))
    for r in rows:
        target = "< 10 " + ("ok" if r["pipe_s"] < 1.1 * r["raw_s"] else "MISS")
        busy = f"{r['raw_cpu'] / r['raw_s']:.1f} / {r['pipe_cpu'] / r['pipe_s']:.1f} of {cores}"
        print(
            f"{r['model']:<19} {n / r['raw_s']:>9.1f} {n / r['pipe_s']:>14.1f} {(r['pipe_s'] - r['raw_s']) / r['raw_s'] * 100:>+10.1f}"
            f" {target:>10} {r['decode_s'] / r['raw_s'] * 100:>15.0f} {busy:>19} {r['cli_s']:>10.2f} {n / r['cli_s']:>9.1f}"
            f" {r['cli_mb']:>11.0f} {r['raw_found']:>5}"
        )
    print(f"\nbaseline for the CLI columns: python -c pass takes {base_s:.2f} s and peaks at {base_mb:.0f} MB")
    print("overhead % = (pipeline time - raw time) / raw time. decode % of raw = sequential read_image time / raw time.")
    print("boxes = detections found by the raw loop (pipeline and CLI are checked to find the same number).")
    for r in rows:
        for problem in r["problems"]:
            print(f"WARNING {r['model']}: {problem}")


if __name__ == "__main__":
    main()
