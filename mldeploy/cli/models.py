"""``mldeploy models``: every model and version, and whether it can run here."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer

from mldeploy.cli.console import error_boundary, out_console
from mldeploy.cli.options import ConfigOption, StateDirOption, project


class ListFormat(str, Enum):
    table = "table"
    json = "json"


def models(
    output: ListFormat = typer.Option(ListFormat.table, "--format", "-f", help="table for people, json for scripts."),
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
) -> None:
    """List every model and version (the zoo's and mldeploy.toml's), and which version is live.

    For each: backend, classes, default threshold, and whether its files are present here.
    """
    from rich.table import Table

    with error_boundary():
        registry = project(state_dir, config).registry()
        rows = []
        for spec in registry.specs:
            missing = spec.missing_files()
            rows.append(
                {
                    "model": spec.ref,
                    "live": registry.default_version(spec.name) == spec.version,
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
            table.add_row(row["model"] + (" *" if row["live"] else ""), row["backend"], classes, f"{row['conf']:g}", weights)
        caption = "* live: the version a bare name means (mldeploy promote changes it)."
        if folders:
            caption += f" Missing files are looked for in {', '.join(sorted(folders))} (MLDEPLOY_YOLO_DIR overrides); --format json lists each path."
        table.caption = caption
        out_console().print(table)
