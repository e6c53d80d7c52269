"""``mldeploy bench PATH... [--versions v1,v2] [--threads 1,2] [--concurrency 1,4]``: what each candidate
costs here, how accurate it is, and which one to deploy under your limits."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from mldeploy.cli.console import err_console, escape, out_console, verdict_line
from mldeploy.cli.options import DEFAULT_MODEL, ENGINE, LABELS, PROJECT, ReportFormat, with_groups

CHOICE = "Choice (exit 3 when no candidate fits)"


@with_groups
def bench(
    paths: Annotated[List[str], typer.Argument(metavar="PATH", show_default=False, help="Your images: files, folders, globs, s3://, @MANIFEST.")],
    model: Annotated[str, typer.Option("--model", "-m", metavar="NAME", help="Model whose versions are the candidates.")] = DEFAULT_MODEL,
    versions: Annotated[Optional[str], typer.Option("--versions", metavar="V1,V2", show_default=False, rich_help_panel="Candidates",
                                                    help="Versions of --model, or NAME@VERSION refs across models [default: every version of --model whose files are here].")] = None,
    threads: Annotated[Optional[str], typer.Option("--threads", metavar="N,N", show_default=False, rich_help_panel="Candidates",
                                                   help="Thread counts for the model libraries (OpenCV, TensorFlow) [default: the cores used, as serve runs without --threads].")] = None,
    concurrency: Annotated[Optional[str], typer.Option("--concurrency", metavar="N,N", show_default=False, rich_help_panel="Candidates",
                                                       help="Requests in flight, as serve sees them [default: 1].")] = None,
    requests: Annotated[int, typer.Option("--requests", min=5, max=100000, metavar="N", rich_help_panel="Candidates",
                                          help="Timed requests per candidate at each concurrency (the images, over again as needed).")] = 100,
    cpus: Annotated[Optional[int], typer.Option("--cpus", min=1, metavar="N", show_default=False, rich_help_panel="Candidates",
                                                help="Pin each measurement to N cores: what a machine of N cores will see [default: every core here].")] = None,
    reference: Annotated[Optional[str], typer.Option("--reference", metavar="VERSION", show_default=False, rich_help_panel="Accuracy",
                                                     help="Without --labels: accuracy is agreement with this version (F1, drift) [default: the live version].")] = None,
    iou: Annotated[float, typer.Option("--iou", min=0.05, max=1.0, metavar="IOU", rich_help_panel="Accuracy", help="Least IoU for two boxes to match.")] = 0.5,
    max_p95_ms: Annotated[Optional[float], typer.Option("--max-p95-ms", metavar="MS", show_default=False, rich_help_panel=CHOICE, help="Most p95 request latency.")] = None,
    max_memory_mb: Annotated[Optional[float], typer.Option("--max-memory-mb", metavar="MB", show_default=False, rich_help_panel=CHOICE, help="Most peak memory of the process.")] = None,
    min_images_per_s: Annotated[Optional[float], typer.Option("--min-images-per-s", metavar="N", show_default=False, rich_help_panel=CHOICE, help="Least throughput at the candidate's concurrency.")] = None,
    min_map: Annotated[Optional[float], typer.Option("--min-map", metavar="SHARE", show_default=False, rich_help_panel=CHOICE, help="Least mAP@0.5:0.95 against --labels.")] = None,
    min_f1: Annotated[Optional[float], typer.Option("--min-f1", metavar="SHARE", show_default=False, rich_help_panel=CHOICE, help="Least F1 against the reference.")] = None,
    objective: Annotated[str, typer.Option("--objective", metavar="latency|throughput|memory|accuracy", rich_help_panel=CHOICE,
                                           help="What the chosen candidate is best at, among those that fit.")] = "latency",
    output: Annotated[ReportFormat, typer.Option("--format", "-f", rich_help_panel="Reports", help="table, or json: the full result on stdout.")] = ReportFormat.table,
    report: Annotated[Optional[Path], typer.Option("--report", metavar="FILE", show_default=False, rich_help_panel="Reports", help="Write the result as JSON.")] = None,
    csv_path: Annotated[Optional[Path], typer.Option("--csv", metavar="FILE", show_default=False, rich_help_panel="Reports", help="Write a row per candidate as CSV.")] = None,
    html: Annotated[Optional[Path], typer.Option("--html", metavar="DIR", show_default=False, rich_help_panel="Reports",
                                                 help="Write a page with a chart of latency against accuracy (pip install 'mldeploy[bench]').")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="A line per measurement on stderr.")] = True,
    project=PROJECT,
    labels=LABELS,
    engine=ENGINE,
) -> None:
    """Measure each candidate on your images, and choose the one that fits your limits.

    A candidate is a version at a thread count and a concurrency. Each version and thread count is
    measured in a fresh process: load and first inference apart, p50/p95/p99 request latency with a 90%
    interval, images per second, peak memory, time per stage, and accuracy against --labels (as eval) or
    against --reference (as shadow). The choice is the best by --objective of those that meet every limit;
    every other candidate is shown with the first limit it breaks.

    Examples:
        mldeploy bench sample_images/ --versions v1,v2 --threads 1,2 --max-p95-ms 150
        mldeploy bench ./val --labels val.json --objective accuracy --max-memory-mb 800 --cpus 1
        mldeploy bench ./imgs -m people --concurrency 1,4 --report bench.json --html bench/

    Exit codes:
        0  a candidate fits every limit (it is named, with how to serve and shadow it)
        1  some inputs could not be read (a candidate still fits)
        2  usage error
        3  no candidate fits (each is named with the first limit it breaks)
        4  a version cannot be loaded
    """
    from mldeploy.fileio import check_destinations
    from mldeploy.report.bench import bench_tables, bench_to_dict, handoff, headline, require_plotting, write_bench_csv, write_bench_html, write_bench_json
    from mldeploy.rollout.bench import Constraints, run_bench
    from mldeploy.rollout.spec import BenchSpec, Inputs

    if html is not None:
        require_plotting()
    check_destinations((report, csv_path), ((html, "--html"),), ())
    spec = BenchSpec(model, Inputs(tuple(paths)), versions, threads, concurrency, requests, cpus, labels, reference, iou,
                     Constraints(max_p95_ms, max_memory_mb, min_images_per_s, min_map, min_f1), objective, engine)

    def say(version, n_threads) -> None:
        if progress:
            err_console.print(escape(f"measuring {version.ref} ({version.backend}) threads={n_threads} in a fresh process ..."))

    result = run_bench(project, spec, on_job=say)
    if output is ReportFormat.json:
        sys.stdout.write(json.dumps(bench_to_dict(result, paths), indent=2) + "\n")
    else:
        console = out_console()
        for table in bench_tables(result):
            console.print(table)
    for path, write in ((report, lambda p: write_bench_json(p, result, paths)), (csv_path, lambda p: write_bench_csv(p, result)),
                        (html, lambda p: write_bench_html(p, result, paths))):
        if path is not None:
            err_console.print(f"wrote {escape(str(write(path)))}")
    nxt = handoff(result, paths)
    for what, line in (nxt or {}).items():
        err_console.print(escape(f"next ({what}): {line}"))
    verdict_line(f"{headline(result)} (measured {result.measured_seconds:.1f} s of {result.wall_seconds:.1f} s)")
    if result.chosen is None:
        raise typer.Exit(3)
    if result.unmatched:
        raise typer.Exit(1)
