"""Rich tables for people: ``detect``'s results and a rehearsal's summary, labels, images, gates and timeline.

Every table takes typed results (a :class:`~mldeploy.pipeline.DetectionResult`, a
:class:`~mldeploy.rollout.rehearsal.Report`) and returns ``rich`` renderables; printing is the caller's.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

from rich.markup import escape
from rich.table import Table

from mldeploy.report import formats as fmt

if TYPE_CHECKING:
    from mldeploy.pipeline import DetectionResult, RunSummary
    from mldeploy.rollout.gates import GateResult, Verdict
    from mldeploy.rollout.rehearsal import Report


def _red(n: int) -> str:
    return f"[red]{n}[/]" if n else "0"


def _columns(table: Table, *names: str, left: tuple[str, ...] = (), fold: tuple[str, ...] = ()) -> None:
    """Add columns that a narrow terminal (80 columns, a CI log) may shrink but never cut: each keeps at
    least its header's width, and text columns fold onto more lines instead of ending in an ellipsis."""
    for name in names:
        table.add_column(name, justify="left" if name in left else "right", min_width=min(len(name), 12),
                         overflow="fold" if name in fold else "ellipsis", no_wrap=name not in fold)


def common_folder(sources: Sequence[str]) -> str:
    """The folder all ``sources`` share ("" when none): rows then show the rest of each path."""
    folders = {os.path.dirname(s) for s in sources}
    if len(sources) < 2 or "" in folders:
        return ""
    try:
        return os.path.commonpath(sorted(folders))
    except ValueError:  # absolute and relative mixed
        return ""


def relative(source: str, folder: str) -> str:
    return os.path.relpath(source, folder) if folder else source


#: How a gate's or a step's outcome reads in a table.
STATUS = {"pass": "[green]pass[/]", "fail": "[bold red]FAIL[/]", "inconclusive": "[bold yellow]INCONCLUSIVE[/]",
          "report only": "[yellow]report only[/]", "not measured": "[dim]not measured[/]", "no traffic": "[dim]no traffic[/]", "not run": "[dim]not run[/]"}


# -- detect ------------------------------------------------------------------------------------------
def detections_table(result: DetectionResult) -> Table:
    dets = result.detections
    table = Table(title=f"{escape(result.source)}: {len(dets)} found by {escape(result.model)}", title_justify="left")
    _columns(table, "#", "label", "confidence", "box x1, y1, x2, y2", left=("label", "box x1, y1, x2, y2"), fold=("label",))
    for i, (box, score, label) in enumerate(zip(dets.xyxy, dets.confidence, dets.label), 1):
        table.add_row(str(i), escape(str(label)), f"{score:.3f}", ", ".join(f"{v:.0f}" for v in box))
    if result.saved_to:
        table.caption = f"saved to {escape(str(result.saved_to))}"
    return table


def images_table(results: Sequence[DetectionResult]) -> Table:
    """One row per image; the rows name each image relative to the folder they share (in the title), so
    the file name shows however deep the folder and however narrow the terminal."""
    folder = common_folder([r.source for r in results])
    where = f" in {escape(folder)}" if folder else ""
    table = Table(title=f"{len(results)} images{where}, {escape(results[0].model)}", title_justify="left")
    _columns(table, "image", "found", "labels", "ms", left=("image", "labels"), fold=("image", "labels"))
    for result in results:
        counts = ", ".join(f"{escape(str(k))} x{v}" for k, v in result.detections.counts().items())
        table.add_row(escape(relative(result.source, folder)), str(len(result.detections)), counts, f"{result.seconds * 1000:.0f}")
    return table


def run_summary_table(summary: RunSummary) -> Table:
    table = Table(title="summary", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("model", escape(summary.model))
    table.add_row("images", str(summary.images))
    table.add_row("failed", _red(summary.failed))
    table.add_row("detections", str(summary.detections))
    for label, count in summary.per_label.most_common():
        table.add_row(f"  {escape(str(label))}", str(count))
    table.add_row("loading the model", f"{summary.load_seconds:.2f} s")
    table.add_row("detecting", f"{summary.wall_seconds:.2f} s ({summary.images_per_second:.1f} images/s; "
                               f"{summary.inference_seconds:.2f} s in the model)")
    return table


# -- shadow and canary ---------------------------------------------------------------------------------
def rehearsal_tables(report: Report, top: int) -> list[Table]:
    """The canary timeline (for a canary), summary, per label, the most disagreeing images, and the gates."""
    from mldeploy.rollout.shadow import most_disagreeing

    tables = [timeline_table(report)] if report.timeline is not None else []
    tables.append(_summary_table(report))
    a = report.summary.agreement
    if a.per_label:
        tables.append(_labels_table(report))
    if report.summary.truth is not None:
        tables.append(truth_table(report))
    worst = most_disagreeing(report.records, top)
    if worst:
        folder = common_folder([r.source for r in report.records])
        where = f" in {escape(folder)}" if folder else ""
        images = Table(title=f"most disagreeing images{where} ({len(worst)} of {a.disagreeing_images})", title_justify="left",
                       caption="miss: only old found it; extra: only new; relab: another label; drift: matched, IoU under the drift IoU",
                       caption_justify="left")
        _columns(images, "image", "old", "new", "match", "miss", "extra", "relab", "drift", "IoU", left=("image",), fold=("image",))
        for rec in worst:
            c = rec.comparison
            new = "[red]error[/]" if c.new_failed else str(len(c.new))
            images.add_row(escape(relative(rec.source, folder)), str(len(c.old)), new, str(len(c.matched)), _red(len(c.missing)),
                           _red(len(c.extra)), _red(len(c.relabelled)), _red(len(c.drifted)), fmt.score(c.mean_iou))
        tables.append(images)
    if report.gates:
        tables.append(gates_table(report.gates, report.verdict, report.settings.get("gates", "default")))
    return tables


def truth_table(report: Report) -> Table:
    """Both versions against the labels, side by side: overall, then recall per label."""
    t = report.summary.truth
    table = Table(title=f"against the labels ({escape(str(report.truths.labels.source))}), IoU 0.5", title_justify="left",
                  caption=f"{len(report.truths.problems)} label problems (skipped)" if report.truths.problems else None, caption_justify="left")
    _columns(table, "", "old", "new", "change", left=("",), fold=("",))
    for name, key in (("precision", "precision"), ("recall", "recall"), ("mAP@0.5", "map50"), ("mAP@0.5:0.95", "map")):
        old, new = getattr(t.old, key), getattr(t.new, key)
        change = f"{new - old:+.3f}" if old is not None and new is not None else "n/a"
        table.add_row(name, fmt.score(old), fmt.score(new), change)
    table.add_row("TP / FP / FN", f"{t.old.tp} / {t.old.fp} / {t.old.fn}", f"{t.new.tp} / {t.new.fp} / {t.new.fn}", "")
    for label, old in t.old.per_label.items():
        new = t.new.per_label.get(label)
        if old.truths and new is not None:
            change = f"{new.recall - old.recall:+.3f}" if old.recall is not None and new.recall is not None else "n/a"
            table.add_row(f"recall: {escape(label)}", fmt.score(old.recall), fmt.score(new.recall), change)
    return table


def gates_table(gates: Sequence[GateResult], verdict: Verdict, policy: str | None = None) -> Table:
    """Every gate with its figure, bound, evidence and result, under the verdict: the one gates table of
    every command (shadow, canary, eval)."""
    title = f"gates ({escape(policy)} policy): {escape(verdict.headline)}" if policy else f"gates: {escape(verdict.headline)}"
    table = Table(title=title, title_justify="left")
    _columns(table, "gate", "value", "bound", "evidence", "result", left=("gate", "evidence", "result"), fold=("gate", "evidence", "result"))
    unjudged = {g.name: ("[bold yellow]INCONCLUSIVE, let through[/]" if verdict.ok else "[yellow]INCONCLUSIVE (did not decide)[/]") for g in verdict.unjudged}
    for g in gates:
        table.add_row(g.gate.flag, g.gate.show(g.value, g.gate.scaled(g.bound)), g.bound_text, escape(g.evidence), unjudged.get(g.name, STATUS[g.status]))
    return table


def _summary_table(report: Report) -> Table:
    s, a = report.summary, report.summary.agreement
    scope = "shadow" if report.kind == "shadow" else "canary requests"
    old_role = "old, as answered live" if s.recorded else "old"
    summary = Table(title=f"{scope}: {escape(s.old)} ({old_role}) vs {escape(s.new)} (new), IoU >= {s.iou_threshold:g}", title_justify="left")
    _columns(summary, "", "old", "new", "new / old", left=("",), fold=("", "new", "new / old"))
    summary.add_row("images answered", str(s.images - s.unreadable - s.old_errors), str(s.images - s.unreadable - s.new_errors), "")
    summary.add_row("errors", _red(s.old_errors), _red(s.new_errors), "")
    summary.add_row("boxes", str(a.old_boxes), str(a.new_boxes), f"{a.new_boxes - a.old_boxes:+d}")
    summary.add_row("latency p50 (ms)", fmt.ms(s.old_latency.p50), fmt.ms(s.new_latency.p50), fmt.interval(s.p50_ratio))
    summary.add_row("latency p95 (ms)", fmt.ms(s.old_latency.p95), fmt.ms(s.new_latency.p95), fmt.interval(s.p95_ratio_estimate))
    if s.latency_sampled:  # a long replay: the percentiles and ratios are a uniform sample's, the means every image's
        summary.add_row("latency sample", f"{len(s.latency_pairs)} of {s.compared} images", "", "")
    summary.add_section()
    summary.add_row("compared images", "", str(s.compared), "")
    summary.add_row("images with disagreement", "", f"{a.disagreeing_images} ({fmt.share(a.disagreement)})", "")
    summary.add_row("boxes matched / missing / extra / relabelled", "", f"{a.matched} / {a.missing} / {a.extra} / {a.relabelled}", "")
    summary.add_row("precision / recall / F1", "", f"{fmt.score(a.precision)} / {fmt.score(a.recall)} / {fmt.score(a.f1)}", "")
    summary.add_row("mean IoU of matches", "", fmt.score(a.mean_iou), "")
    summary.add_row(f"drifted matches (IoU < {s.drift_iou:g})", "", f"{a.drifted} ({fmt.share(a.drift)})", "")
    if a.answered is not None and a.answered.images != a.images:
        summary.add_row("recall on answered images only", "", fmt.score(a.answered.recall), "")
    if s.unreadable:
        summary.add_row("unreadable images", "", _red(s.unreadable), "")
    return summary


def _labels_table(report: Report) -> Table:
    labels = Table(title="per label", title_justify="left")
    _columns(labels, "label", "old", "new", "change", "match", "miss", "extra", "relab", "drift", "recall", "prec", left=("label",), fold=("label",))
    for label, x in report.summary.agreement.per_label.items():
        change = f"[red]{x.count_change:+d}[/]" if x.count_change else "0"
        labels.add_row(escape(label), str(x.old), str(x.new), change, str(x.matched), str(x.missing), str(x.extra), str(x.relabelled),
                       str(x.drifted), fmt.score(x.recall), fmt.score(x.precision))
    return labels


def timeline_table(report: Report) -> Table:
    s = report.summary
    table = Table(title=f"canary: {escape(s.old)} -> {escape(s.new)}", title_justify="left")
    _columns(table, "step", "share", "images", "canary", "disagree", "recall", "errors", "p50 ms old/new", "verdict",
             left=("verdict",), fold=("p50 ms old/new", "verdict"))
    for n, step in enumerate(report.timeline, 1):
        x = step.summary
        if x is None:
            cells = ["", "", "", ""]
        else:
            latency = f"{fmt.ms(x.old_latency.p50)} / {fmt.ms(x.new_latency.p50)}"
            cells = [fmt.share(x.agreement.disagreement), fmt.score(x.agreement.recall), str(x.new_errors), latency]
        ran = step.verdict != "not run"
        deciding = step.failed_gates or step.inconclusive_gates
        verdict = STATUS[step.verdict] + ("" if not deciding else ": " + escape(", ".join(g.gate.flag for g in deciding)))
        table.add_row(str(n), f"{step.share:g}%", str(step.requests) if ran else "", str(step.canary_requests) if ran else "", *cells, verdict)
    return table
