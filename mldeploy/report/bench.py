"""``mldeploy bench``'s result for people (rich tables, an HTML page with a chart) and for machines
(JSON, CSV). One :class:`~mldeploy.rollout.bench.BenchResult` feeds them all."""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path
from typing import Any, Sequence

from rich.markup import escape
from rich.table import Table

from mldeploy.fileio import atomic_write
from mldeploy.report import formats as fmt
from mldeploy.report.serialize import _round  # the package's one rounding of a figure that may be missing
from mldeploy.rollout.bench import BenchResult, Candidate

#: Every candidate figure, in the order of the CSV's columns and the JSON's keys.
COLUMNS = ("version", "threads", "concurrency", "p50_ms", "p95_ms", "p95_ms_low", "p95_ms_high", "p99_ms", "images_per_s", "peak_mb", "files_mb",
           "load_s", "first_s", "decode_ms", "pre_ms", "forward_ms", "post_ms", "model_ms", "accuracy_against", "map", "map50", "f1", "drift",
           "precision", "recall", "errors", "breaks", "chosen")


def candidate_to_dict(c: Candidate, chosen: Candidate | None) -> dict[str, Any]:
    a = c.accuracy
    p95 = c.latency.get("p95")
    return {
        "version": c.spec.ref, "threads": c.threads, "concurrency": c.concurrency,
        "p50_ms": _round(c.p("p50"), 2), "p95_ms": _round(c.p("p95"), 2), "p95_ms_low": _round(p95.low * 1000 if p95 else None, 2),
        "p95_ms_high": _round(p95.high * 1000 if p95 else None, 2), "p99_ms": _round(c.p("p99"), 2),
        "images_per_s": round(c.images_per_second, 2), "peak_mb": round(c.peak_mb, 1), "files_mb": round(c.files_mb, 2),
        "load_s": round(c.load_seconds, 3), "first_s": round(c.first_seconds, 3),
        **{f"{stage}_ms": _round(c.stages_ms.get(stage), 3) for stage in ("decode", "pre", "forward", "post", "model")},
        "accuracy_against": a.against if a else None, "map": _round(a.map if a else None, 4), "map50": _round(a.map50 if a else None, 4),
        "f1": _round(a.f1 if a else None, 4), "drift": _round(a.drift if a else None, 4), "precision": _round(a.precision if a else None, 4),
        "recall": _round(a.recall if a else None, 4), "errors": a.errors if a else 0, "breaks": c.breaks, "chosen": c is chosen,
    }


def headline(result: BenchResult) -> str:
    """``PASS: faces@v1 threads=2 concurrency=1 (lowest p95 of 3 candidates that meet every limit)`` or
    ``FAIL: no candidate fits (...)``: one line, the verdict's first word first."""
    goal = {"latency": "lowest p95", "throughput": "most images/s", "memory": "least memory", "accuracy": "most accurate"}[result.objective]
    c = result.chosen
    if c is not None:
        fitting = sum(x.breaks is None for x in result.candidates)  # every candidate when no limit was given
        limited = any(v is not None for v in vars(result.constraints).values())
        if fitting == 1:
            why = f"the one candidate of {len(result.candidates)} that meets every limit" if limited else "the only candidate; no limit was given"
        else:
            why = f"{goal} of {fitting} candidates" + (" that meet every limit" if limited else "; no limit was given")
        return f"PASS: {c.name} ({why})"
    return f"FAIL: no candidate fits ({len(result.candidates)} measured; closest: {result.ranked[0].name}: {result.ranked[0].breaks})"


def handoff(result: BenchResult, paths: Sequence[str]) -> dict[str, str] | None:
    """What to run next with the chosen candidate: serve it at its thread count, and shadow it against
    the live version on the same images."""
    c = result.chosen
    if c is None:
        return None
    images = " ".join(paths) or "IMAGES"
    serve = {"serve": f"mldeploy serve -m {c.spec.name} --threads {c.threads}"}
    if c.spec.ref in result.settings.get("live", ()):
        return {**serve, "live": f"{c.spec.ref} is the live version already"}
    return {**serve, "shadow": f"mldeploy shadow {images} -m {c.spec.name} --new {c.spec.ref}", "promote": f"mldeploy promote {c.spec.ref}"}


def bench_to_dict(result: BenchResult, paths: Sequence[str] = ()) -> dict[str, Any]:
    ok = result.chosen is not None
    return {
        "kind": "bench",
        "passed": ok,
        "verdict": {"status": "pass" if ok else "fail", "headline": headline(result), "chosen": result.chosen.name if ok else None,
                    "objective": result.objective},
        "settings": result.settings,
        "constraints": {k: v for k, v in vars(result.constraints).items() if v is not None},
        "machine": result.machine,
        "candidates": [candidate_to_dict(c, result.chosen) for c in result.ranked],
        "handoff": handoff(result, paths),
        "unmatched_inputs": [{"input": arg, "error": str(err)} for arg, err in result.unmatched],
        "seconds": {"wall": round(result.wall_seconds, 2), "measured": round(result.measured_seconds, 2)},
    }


def write_bench_json(path: Path, result: BenchResult, paths: Sequence[str] = ()) -> Path:
    return atomic_write(path, (json.dumps(bench_to_dict(result, paths), indent=2) + "\n").encode("utf-8"))


def write_bench_csv(path: Path, result: BenchResult) -> Path:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for c in result.ranked:
        writer.writerow(candidate_to_dict(c, result.chosen))
    return atomic_write(path, out.getvalue().encode("utf-8"))


def _ms(p) -> str:
    return "n/a" if p is None else f"{p.value * 1000:.1f}"


def bench_tables(result: BenchResult) -> list[Table]:
    labels = result.settings.get("labels")
    accuracy_head = ("mAP", "mAP50") if labels else ("F1", "drift")
    title = (f"bench: {result.settings['images']} images, {result.settings['requests']} requests a candidate, "
             f"{result.machine['cores_used']} of {result.machine['cores_here']} cores ({escape(str(result.machine['cpu']))}); "
             f"accuracy against {escape(labels or str(result.settings.get('reference')))}")
    table = Table(title=title, title_justify="left")
    for name in ("candidate", "p50 ms", "p95 ms (90% CI)", "p99 ms", "images/s", "peak MB", *accuracy_head, "load s", "first s", "fits"):
        table.add_column(name, justify="left" if name in ("candidate", "fits") else "right", no_wrap=name not in ("candidate", "fits"),
                         overflow="fold")
    for c in result.ranked:
        a = c.accuracy
        p95 = c.latency.get("p95")
        figures = (fmt.score(a.map), fmt.score(a.map50)) if labels and a else (fmt.score(a.f1 if a else None), fmt.share(a.drift if a else None))
        fits = "[bold green]chosen[/]" if c is result.chosen else ("[green]yes[/]" if c.breaks is None else f"[red]{escape(c.breaks)}[/]")
        table.add_row(escape(c.name), _ms(c.latency.get("p50")), f"{_ms(p95)} ({p95.low * 1000:.1f}-{p95.high * 1000:.1f})" if p95 else "n/a",
                      _ms(c.latency.get("p99")), f"{c.images_per_second:.1f}", f"{c.peak_mb:.0f}", *figures, f"{c.load_seconds:.2f}",
                      f"{c.first_seconds:.2f}", fits)
    stages = Table(title="where the time goes, per image at concurrency 1 (ms)", title_justify="left")
    for name in ("version", "threads", "decode", "pre", "forward", "post", "model", "files MB"):
        stages.add_column(name, justify="left" if name == "version" else "right", no_wrap=name != "version")
    seen = set()
    for c in result.ranked:
        if (c.spec.ref, c.threads) in seen:
            continue
        seen.add((c.spec.ref, c.threads))
        s = c.stages_ms
        stages.add_row(escape(c.spec.ref), str(c.threads), *(f"{s[k]:.2f}" if k in s else "" for k in ("decode", "pre", "forward", "post", "model")),
                       f"{c.files_mb:.1f}")
    stages.caption = "pre, forward, post: for backends that mark them (OpenCV DNN); model: the whole call otherwise"
    return [table, stages]


def write_bench_html(folder: Path, result: BenchResult, paths: Sequence[str] = ()) -> Path:
    """``folder/index.html``: the verdict, a chart of p95 latency against accuracy (a point per candidate,
    its area the peak memory; the limits drawn as lines), and every figure. The chart is an SVG drawn by
    matplotlib and written into the page: no script, no network."""
    chart = _chart_svg(result)
    doc = bench_to_dict(result, paths)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row.values()) + "</tr>"
                   for row in doc["candidates"])
    nxt = "".join(f"<li><code>{html.escape(line)}</code></li>" for line in (doc["handoff"] or {}).values())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>mldeploy bench</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;font-size:.85em}} td,th{{border:1px solid #ccc;padding:.2em .5em}}
.pass{{color:#157f3b}} .fail{{color:#c62828}}</style></head><body>
<h1>mldeploy bench</h1>
<p class="{doc['verdict']['status']}"><b>{html.escape(doc['verdict']['headline'])}</b></p>
<p>{html.escape(str(result.machine['cpu']))}: {result.machine['cores_used']} of {result.machine['cores_here']} cores, {result.machine.get('memory_gb')} GB;
{html.escape(', '.join(f'{k} {v}' for k, v in result.machine.get('libraries', {}).items()))}</p>
{chart}
{'<h2>Next</h2><ul>' + nxt + '</ul>' if nxt else ''}
<h2>Every candidate</h2><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>
</body></html>
"""
    from mldeploy.report.html import write_report_folder

    return write_report_folder(folder, (), lambda staging: page)


def require_plotting() -> None:
    """``--html`` needs matplotlib (the ``bench`` extra): checked before anything is measured."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        from mldeploy.errors import UsageError

        raise UsageError("--html draws its chart with matplotlib: pip install 'mldeploy[bench]'") from None


def _chart_svg(result: BenchResult) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    labels = result.settings.get("labels")
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot()
    for c in result.candidates:
        score = c.accuracy.score if c.accuracy else None
        p95 = c.p("p95")
        if score is None or p95 is None:
            continue
        colour = "#157f3b" if c is result.chosen else ("#1f77b4" if c.breaks is None else "#c62828")
        ax.scatter([p95], [score], s=max(c.peak_mb, 1) / 2, alpha=0.6, color=colour, edgecolors="black", linewidths=0.5)
        ax.annotate(f"{c.spec.ref} t{c.threads} c{c.concurrency}", (p95, score), fontsize=7, xytext=(4, 4), textcoords="offset points")
    k = result.constraints
    if k.max_p95_ms is not None:
        ax.axvline(k.max_p95_ms, color="#c62828", linestyle="--", linewidth=1, label=f"--max-p95-ms {k.max_p95_ms:g}")
    floor = k.min_map if labels else k.min_f1
    if floor is not None:
        ax.axhline(floor, color="#c62828", linestyle=":", linewidth=1, label=f"{'--min-map' if labels else '--min-f1'} {floor:g}")
    ax.set_xlabel("p95 request latency (ms)")
    ax.set_ylabel("mAP@0.5:0.95 against the labels" if labels else f"F1 against {result.settings.get('reference')}")
    ax.set_title("latency against accuracy (area: peak memory; green: chosen, red: breaks a limit)", fontsize=9)
    ax.grid(True, alpha=0.3)
    if k.max_p95_ms is not None or floor is not None:
        ax.legend(fontsize=7)
    out = io.StringIO()
    fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Creator": None, "Date": None})
    svg = out.getvalue()
    return svg[svg.index("<svg"):]
