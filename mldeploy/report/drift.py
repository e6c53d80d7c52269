"""``mldeploy drift``'s outputs: a table, JSON, and an HTML page of overlaid histograms (matplotlib SVGs
inside the page: no script, nothing fetched)."""

from __future__ import annotations

import html
import io
import json
from pathlib import Path

from rich.table import Table

from mldeploy.fileio import atomic_write


def drift_table(report) -> Table:
    table = Table(title=f"drift: {report.current.name} ({report.current.images} images) against {report.reference.name} "
                        f"({report.reference.images} images)", title_justify="left",
                  caption="PSI bands: under 0.1 stable, 0.1 to 0.25 moderate, over 0.25 a major shift", caption_justify="left")
    for column in ("feature", "kind", "values (ref / cur)", "PSI", "band", "largest move"):
        table.add_column(column, justify="right" if column in ("PSI", "values (ref / cur)") else "left")
    for f in report.features:
        moves = sorted(zip(f.bins, f.reference, f.current), key=lambda b: -abs(b[2] - b[1]))
        move = f"{moves[0][0]}: {moves[0][1]:.0%} -> {moves[0][2]:.0%}" if moves and f.psi is not None else ""
        judged = f.kind == "output" and f.psi is not None and f.psi > report.max_psi
        table.add_row(f.feature, f.kind, f"{f.reference_n} / {f.current_n}", "n/a" if f.psi is None else f"{f.psi:.3f}",
                      f"[red]{f.band}[/]" if judged else f.band, move)
    return table


def write_drift_json(path: Path, report) -> Path:
    return atomic_write(path, (json.dumps(report.to_dict(), indent=2) + "\n").encode("utf-8"))


def _histogram_svg(f) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 2.6))
    ax = fig.add_subplot()
    x = range(len(f.bins))
    ax.bar(x, f.reference, width=0.8, alpha=0.5, label="reference", color="#1f77b4")
    ax.bar(x, f.current, width=0.8, alpha=0.5, label="current", color="#d62728")
    ax.set_xticks(list(x))
    ax.set_xticklabels(f.bins, rotation=45, ha="right", fontsize=6)
    ax.set_ylabel("share", fontsize=8)
    ax.set_title(f"{f.feature} ({f.kind}): PSI {'n/a' if f.psi is None else f'{f.psi:.3f}'}, {f.band}", fontsize=9)
    ax.legend(fontsize=7)
    out = io.StringIO()
    fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Creator": None, "Date": None})
    svg = out.getvalue()
    return svg[svg.index("<svg"):]


def write_drift_html(folder: Path, report) -> Path:
    """``folder/index.html``: the verdict and each feature's histograms, reference and current overlaid."""
    from mldeploy.report.html import write_report_folder

    doc = report.to_dict()
    charts = "".join(f"<figure>{_histogram_svg(f)}</figure>" for f in report.features)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>mldeploy drift</title>
<style>body{{font-family:sans-serif;margin:2em}} figure{{display:inline-block;margin:.5em}} .pass{{color:#157f3b}} .fail{{color:#c62828}}</style></head><body>
<h1>mldeploy drift</h1>
<p class="{doc['verdict']['status']}"><b>{html.escape(doc['verdict']['headline'])}</b></p>
<p>Reference: {html.escape(report.reference.name)} ({report.reference.images} images). Current: {html.escape(report.current.name)} ({report.current.images} images).
PSI bands: under 0.1 stable, 0.1 to 0.25 moderate, over 0.25 a major shift; --max-psi {report.max_psi:g} judges the output features.</p>
{charts}
</body></html>
"""
    return write_report_folder(folder, (), lambda staging: page)
