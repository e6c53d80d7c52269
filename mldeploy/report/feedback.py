"""Tables of close-the-loop results: versions scored on labelled traffic (``eval --capture``)."""

from __future__ import annotations

from rich.table import Table


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def capture_scores_table(scores) -> Table:
    """One row per version, kind of answers and window: requests scored, precision, recall, mAP."""
    table = Table(title=f"{scores.model} on labelled traffic: {scores.labelled} of {scores.requests} captured requests have labels "
                        f"(capture {scores.folder})", title_justify="left")
    for column in ("version", "answers", "window (UTC)", "requests", "precision", "recall", "mAP@0.5", "mAP@0.5:0.95", "worst label recall"):
        table.add_column(column, justify="left" if column in ("version", "answers", "window (UTC)", "worst label recall") else "right")
    for row in scores.rows:
        e = row.evaluation
        labelled = [(k, v.recall) for k, v in e.per_label.items() if v.recall is not None]
        worst = min(labelled, key=lambda kv: kv[1]) if labelled else None
        table.add_row(row.version, row.answers, (row.window or "all")[:16].replace("T", " "), str(row.requests), _f(e.precision), _f(e.recall),
                      _f(e.map50), _f(e.map), f"{worst[0]} {worst[1]:.3f}" if worst else "n/a")
    return table
