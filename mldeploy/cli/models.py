"""``mldeploy models``: every model and version, and whether it can run here."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer

from mldeploy.cli.console import error_boundary, out_console


class ListFormat(str, Enum):
    table = "table"
    json = "json"


def models(
    output: ListFormat = typer.Option(ListFormat.table, "--format", "-f", help="table for people, json for scripts."),
) -> None:
    """List every model and version: backend, classes, default threshold, whether its files are present."""
    from rich.table import Table

    from mldeploy.models import default_registry

    with error_boundary():
        registry = default_registry()
        rows = []
        for spec in registry.specs:
            missing = spec.missing_files()
            rows.append(
                {
                    "model": spec.ref,
                    "default": registry.default_version(spec.name) == spec.version,
                    "backend": spec.backend,
                    "classes": list(spec.classes),
                    "conf": spec.conf,
                    "available": not missing,
                    "missing": [str(p) for p in missing],
                    "files": {role: str(path) for role, path in spec.files.items()},
                    "description": spec.description,
                }
            )
        if output is ListFormat.json:
            typer.echo(json.dumps({"models": rows}, indent=2))
            return
        table = Table(title="mldeploy models", title_justify="left", caption_justify="left")
        for column in ("model", "backend", "classes", "conf", "weights"):
            table.add_column(column, no_wrap=column == "model")
        folders = set()
        for row in rows:
            classes = ", ".join(row["classes"]) if len(row["classes"]) <= 4 else f"{len(row['classes'])} COCO classes"
            weights = "[green]present[/]" if row["available"] else f"[red]missing {len(row['missing'])}[/]"
            folders.update(str(Path(p).parent) for p in row["missing"])
            table.add_row(row["model"] + (" *" if row["default"] else ""), row["backend"], classes, f"{row['conf']:g}", weights)
        caption = "* the version a bare name means."
        if folders:
            caption += f" Missing files are looked for in {', '.join(sorted(folders))} (MLDEPLOY_YOLO_DIR overrides); --format json lists each path."
        table.caption = caption
        out_console().print(table)
