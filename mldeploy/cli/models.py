"""``mldeploy models``: every model and version; ``models validate`` and ``models pin``."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from mldeploy.cli.console import App, err_console, error_line, escape, out_console
from mldeploy.cli.options import ConfigOption, StateDirOption, project


class ListFormat(str, Enum):
    table = "table"
    json = "json"


app = App(help="List models and versions; validate and pin your own.", add_completion=False)


@app.callback(invoke_without_command=True)
def models(
    ctx: typer.Context,
    output: Annotated[ListFormat, typer.Option("--format", "-f", help="table for people, json for scripts.")] = ListFormat.table,
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
) -> None:
    """List every model and version (the zoo's and mldeploy.toml's), and which version is live.

    For each: backend, classes, default threshold, and whether its files are present here.

    Examples:
        mldeploy models
        mldeploy models validate faces@mine
        mldeploy models pin faces@mine
    """
    from rich.table import Table

    if ctx.invoked_subcommand:
        return
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
        table.add_row(escape(row["model"]) + (" *" if row["live"] else ""), row["backend"], escape(classes), f"{row['conf']:g}", weights)
    caption = "* live: the version a bare name means (mldeploy promote changes it)."
    if folders:
        caption += f" Missing files are looked for in {escape(', '.join(sorted(folders)))} (MLDEPLOY_YOLO_DIR overrides); --format json lists each path."
    table.caption = caption
    out_console().print(table)


@app.command("validate")
def validate(
    refs: Annotated[Optional[List[str]], typer.Argument(metavar="REF", help="Versions to check (NAME@VERSION or NAME) \\[default: every version in mldeploy.toml].", show_default=False)] = None,
    all_versions: Annotated[bool, typer.Option("--all", help="Check the built-in zoo too.")] = False,
    image: Annotated[Optional[Path], typer.Option("--image", help="Image for the test forward pass \\[default: a generated 640x480 picture].")] = None,
    pin: Annotated[bool, typer.Option("--pin/--no-pin", help="Record each file's SHA-256 for versions that pass and have none yet.")] = True,
    output: Annotated[ListFormat, typer.Option("--format", "-f", help="table for people, json for scripts.")] = ListFormat.table,
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Check versions end to end: files exist, the network loads, a test forward pass gives
    well-formed output, and pinned files did not change. One line per mistake, naming the key and the fix.

    Examples:
        mldeploy models validate
        mldeploy models validate faces@mine --image photo.jpg
        mldeploy models validate --all --format json

    Exit codes:
        0  every version passes
        2  mldeploy.toml itself is wrong
        4  some version fails (each mistake is named, with its fix)
    """
    from rich.table import Table

    from mldeploy.errors import UsageError
    from mldeploy.images import read_image
    from mldeploy.models.validate import test_image, validate as check

    proj = project(state_dir, config)
    registry = proj.registry()
    if refs:
        specs = [registry.resolve(ref) for ref in refs]
    else:
        from mldeploy.models.registry import builtin_specs

        zoo = {s.ref for s in builtin_specs()}
        specs = [s for s in registry.specs if all_versions or s.ref not in zoo]
        if not specs:
            raise UsageError(f"no versions of your own to validate ({proj.config_path or 'no mldeploy.toml here'}); name some, or give --all")
    picture = read_image(image) if image is not None else test_image()
    results = [check(proj, spec, picture, pin=pin) for spec in specs]
    if output is ListFormat.json:
        typer.echo(json.dumps({"versions": [r.__dict__ | {"ok": r.ok} for r in results]}, indent=2))
    else:
        table = Table(title="mldeploy models validate", title_justify="left")
        for column in ("version", "files", "loads", "forward pass", "sha256", "result"):
            table.add_column(column)
        for r in results:
            files = "[red]missing[/]" if any("no such file" in p for p in r.problems) else "ok"
            loads = "ok" if r.loaded else ("" if files != "ok" else "[red]no[/]")
            forward = "" if r.detections is None else (f"{r.over_threshold} boxes at conf >= {r.threshold:g} ({r.detections} at any), "
                                                        f"{r.milliseconds:.0f} ms")
            table.add_row(escape(r.ref), files, loads, forward, r.pins, "[green]ok[/]" if r.ok else "[bold red]FAIL[/]")
        out_console().print(table)
    failed = [r for r in results if not r.ok]
    for r in failed:
        for problem in r.problems:
            error_line(escape(problem))
    if failed:
        raise typer.Exit(4)


@app.command("pin")
def pin_command(
    refs: Annotated[List[str], typer.Argument(metavar="REF", help="Versions whose files' SHA-256 to record now (NAME@VERSION).", show_default=False)],
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Record the SHA-256 of a version's files now: after you replaced them on purpose.

    Examples:
        mldeploy models pin faces@mine
    """
    from mldeploy.errors import ModelUnavailableError
    from mldeploy.models.registry import missing_files_message

    proj = project(state_dir, config)
    registry = proj.registry()
    for ref in refs:
        spec = registry.resolve(ref)
        missing = spec.missing_files()
        if missing:
            raise ModelUnavailableError(missing_files_message(spec, missing))
        entries = proj.pin(spec)
        for role, (path, digest, size) in entries.items():
            err_console.print(f"pinned {escape(spec.ref)} {role}: {escape(path)} sha256 {digest[:16]}... ({size} bytes)")
