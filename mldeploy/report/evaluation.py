"""Rendering an ``mldeploy eval`` run: plain data (JSON), rich tables, JUnit XML and an HTML folder."""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Sequence

from mldeploy.fileio import atomic_write
from mldeploy.report import formats as fmt
from mldeploy.report.html import _CSS, _rows, draw, gates_html, problems_table, write_report_folder
from mldeploy.report.json_junit import count_cases, gates_suite, label_problems_case
from mldeploy.report.serialize import detections_to_list, evaluation_to_dict, gate_to_dict
from mldeploy.truth.evaluate import BACKGROUND, Evaluation, ImageScore
from mldeploy.rollout.gates import verdict
from mldeploy.truth.run import EvalRun


def worst_images(scores: Sequence[ImageScore], n: int) -> list[ImageScore]:
    """The ``n`` images with the most errors (false positives plus false negatives)."""
    wrong = [s for s in scores if not s.correct]
    return sorted(wrong, key=lambda s: (-(s.fp + s.fn), s.name))[:n]


def eval_run_to_dict(run: EvalRun, gates: Sequence = ()) -> dict[str, Any]:
    return {
        "kind": "eval",
        "settings": run.settings,
        "complete": run.complete,
        "summary": evaluation_to_dict(run.evaluation),
        "gates": [gate_to_dict(g) for g in gates],
        "problems": [{"kind": p.kind, "file": p.file, "entry": p.entry, "message": p.message} for p in run.problems],
        "failed": [{"image": r.source, "error": str(r.error)} for r in run.failed],
        "unmatched_inputs": [{"input": arg, "error": str(err)} for arg, err in run.unmatched],
        "images": [{"image": s.name, "tp": s.tp, "fp": s.fp, "fn": s.fn, "truth": detections_to_list(s.truth),
                    "prediction": detections_to_list(s.prediction)} for s in run.evaluation.images],
    }


def write_eval_json(path: Path, run: EvalRun, gates: Sequence = (), protect: Sequence[Path] = ()) -> Path:
    return atomic_write(path, (json.dumps(eval_run_to_dict(run, gates), indent=2) + "\n").encode("utf-8"), protect)


def eval_junit(run: EvalRun, gates: Sequence = ()) -> bytes:
    """A case per gate (a failure when it failed) and per labelled image (TP / FP / FN as properties,
    never failures: the gates judge them); an unreadable image or a model error is an error."""
    e = run.evaluation
    root = ET.Element("testsuites", name=f"mldeploy eval {e.model}")
    props = ET.SubElement(root, "properties")
    for key, value in (("precision", e.precision), ("recall", e.recall), ("map50", e.map50), ("map", e.map)):
        ET.SubElement(props, "property", name=key, value=fmt.score(value))
    ET.SubElement(props, "property", name="verdict", value=verdict(list(gates)).headline)
    gates_suite(root, verdict(list(gates)), "mldeploy.eval.gates")
    label_problems_case(root, run.problems, "mldeploy.eval.labels")
    images = ET.SubElement(root, "testsuite", name="images")
    for s in e.images:
        case = ET.SubElement(images, "testcase", classname="mldeploy.eval.images", name=s.name)
        p = ET.SubElement(case, "properties")
        for key in ("tp", "fp", "fn"):
            ET.SubElement(p, "property", name=key, value=str(getattr(s, key)))
        if not s.correct:
            ET.SubElement(case, "system-out").text = f"{s.fn} true boxes missed, {s.fp} false boxes"
    for r in run.failed:
        case = ET.SubElement(images, "testcase", classname="mldeploy.eval.images", name=r.source)
        ET.SubElement(case, "error", message=str(r.error), type=type(r.error).__name__)
    count_cases(root)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write_eval_junit(path: Path, run: EvalRun, gates: Sequence = (), protect: Sequence[Path] = ()) -> Path:
    return atomic_write(path, eval_junit(run, gates), protect)


def write_eval_html(folder: Path, run: EvalRun, gates: Sequence = (), protect: Sequence[Path] = (), max_images: int = 200) -> Path:
    """Summary, per label, confusion, problems, and each image with an error: truth beside prediction
    (missed true boxes dashed on the prediction's side)."""
    from mldeploy.annotate import ComparisonAnnotator

    paths = {r.source: r for r in run.results}
    e = run.evaluation
    esc = html.escape

    def build(staging: Path) -> str:
        annotator = ComparisonAnnotator()
        figures = []
        wrong = worst_images(e.images, max_images)
        for n, s in enumerate(wrong, 1):
            result = paths.get(s.name)
            name, error = draw(staging, n, result.source if result else s.name,
                               lambda image: annotator.annotate(image, s.comparison, ("truth", f"prediction: {e.model}")))
            caption = f"<code>{esc(s.name)}</code>: {s.tp} found, {s.fn} missed, {s.fp} false"
            figures.append(f'<figure><img src="{name}" alt="{esc(s.name, quote=True)}" loading="lazy"><figcaption>{caption}</figcaption></figure>'
                           if name else f"<figure><figcaption>{caption} (image not shown: {esc(error or '')})</figcaption></figure>")
        summary = _rows([("images scored", len(e.images)), ("true boxes", e.tp + e.fn), ("predicted boxes", sum(s.predictions for s in e.per_label.values())),
                         ("TP / FP / FN", f"{e.tp} / {e.fp} / {e.fn}"), ("precision (IoU 0.5)", fmt.score(e.precision)),
                         ("recall (IoU 0.5)", fmt.score(e.recall)), ("mAP@0.5", fmt.score(e.map50)), ("mAP@0.5:0.95", fmt.score(e.map))], ("", "value"))
        labels = _rows([(esc(label), s.truths, s.predictions, s.tp, s.fp, s.fn, fmt.score(s.precision), fmt.score(s.recall), fmt.score(s.ap50),
                         fmt.score(s.ap)) for label, s in e.per_label.items() if s.truths or s.predictions],
                       ("label", "truths", "predicted", "TP", "FP", "FN", "precision", "recall", "AP@0.5", "AP@0.5:0.95"))
        names = confusion_labels(e)
        confusion = _rows([(esc(t), *(e.confusion.get((t, p), 0) for p in names)) for t in names], ("truth \\ predicted", *names))
        problems = problems_table(run.problems)
        gate_rows = gates_html(gates, verdict(list(gates)))
        legend = ('<p class="legend"><span style="background:#28a03c">found</span><span style="background:#dc2828">missed (dashed on the right)</span>'
                  '<span style="background:#1478dc">false</span><span style="background:#ff9600">wrong label</span></p>')
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>mldeploy eval: {esc(e.model)}</title><style>{_CSS}</style></head>
<body>
<h1>mldeploy eval: <code>{esc(e.model)}</code> against <code>{esc(str(run.settings.get("labels", "")))}</code></h1>
{"<h2>Gates</h2>" + gate_rows if gates else ""}
<h2>Summary</h2>{summary}
<h2>Per label</h2>{labels}
<h2>Confusion (boxes, IoU 0.5)</h2>{confusion}
<h2>Problems ({len(run.problems)})</h2>{problems if run.problems else "<p>Every image had labels and every label an image.</p>"}
<h2>Images with an error ({len([s for s in e.images if not s.correct])})</h2>{legend if figures else ""}
{"".join(figures)}
</body></html>
"""

    return write_report_folder(folder, protect, build)


def confusion_labels(e: Evaluation) -> list[str]:
    seen = sorted({t for t, _ in e.confusion} | {p for _, p in e.confusion} - {BACKGROUND})
    return [label for label in seen if label != BACKGROUND] + [BACKGROUND]


def eval_tables(run: EvalRun, top: int, gates: Sequence = ()) -> list:
    """Rich tables: summary, per label, confusion, the images with the most errors, gates."""
    from rich.markup import escape
    from rich.table import Table

    from mldeploy.report.tables import common_folder, gates_table, relative

    e = run.evaluation
    summary = Table(title=f"eval: {escape(e.model)} against {escape(str(run.settings.get('labels', '')))} ({run.settings.get('format', '')}), IoU 0.5",
                    title_justify="left")
    summary.add_column("", no_wrap=True)
    summary.add_column("value", justify="right")
    for name, value in (("images scored", str(len(e.images))), ("true / predicted boxes", f"{e.tp + e.fn} / {e.tp + e.fp}"),
                        ("TP / FP / FN", f"{e.tp} / {e.fp} / {e.fn}"), ("precision", fmt.score(e.precision)), ("recall", fmt.score(e.recall)),
                        ("mAP@0.5", fmt.score(e.map50)), ("mAP@0.5:0.95", fmt.score(e.map)), ("skipped (problems)", str(len(run.problems))),
                        ("failed images", str(len(run.failed)))):
        summary.add_row(name, value)
    tables = [summary]
    labels = Table(title="per label", title_justify="left")
    for column in ("label", "truths", "pred", "TP", "FP", "FN", "precision", "recall", "AP50", "AP"):
        labels.add_column(column, justify="left" if column == "label" else "right", no_wrap=True, overflow="fold" if column == "label" else "ellipsis")
    for label, s in e.per_label.items():
        if s.truths or s.predictions:
            labels.add_row(escape(label), str(s.truths), str(s.predictions), str(s.tp), str(s.fp), str(s.fn), fmt.score(s.precision),
                           fmt.score(s.recall), fmt.score(s.ap50), fmt.score(s.ap))
    tables.append(labels)
    names = confusion_labels(e)
    if len(names) <= 12:
        confusion = Table(title="confusion (boxes; rows: truth, columns: predicted)", title_justify="left")
        confusion.add_column("truth", no_wrap=True)
        for name in names:
            confusion.add_column(escape(name), justify="right")
        for t in names:
            confusion.add_row(escape(t), *(str(e.confusion.get((t, p), 0)) for p in names))
        tables.append(confusion)
    worst = worst_images(e.images, top)
    if worst:
        folder = common_folder([s.name for s in worst])
        table = Table(title=f"images with the most errors{f' (in {escape(folder)})' if folder else ''}", title_justify="left")
        for column in ("image", "TP", "FP", "FN"):
            table.add_column(column, justify="left" if column == "image" else "right", overflow="fold")
        for s in worst:
            table.add_row(escape(relative(s.name, folder)), str(s.tp), str(s.fp), str(s.fn))
        tables.append(table)
    if gates:
        tables.append(gates_table(gates, verdict(list(gates))))
    return tables
