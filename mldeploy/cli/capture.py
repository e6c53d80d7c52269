"""``mldeploy capture``: list, summarise and prune a capture folder (``mldeploy serve --capture DIR``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Optional

import typer

from mldeploy.cli.console import App, out_console
from mldeploy.cli.models import ListFormat
from mldeploy.errors import UsageError

app = App(help="List, summarise and prune what a server captured (serve --capture DIR).", add_completion=False)

FolderArgument = Annotated[Path, typer.Argument(metavar="DIR", help="A capture folder (what serve --capture wrote).", show_default=False)]
FormatOption = Annotated[ListFormat, typer.Option("--format", "-f", help="table for people, json for scripts.")]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


#: The oldest --older-than that means something (before it, the epoch: no capture is older).
MAX_AGE = 100 * 365 * 86400


def parse_age(text: str) -> float:
    """``90s``, ``30m``, ``12h``, ``7d``, ``2w`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if not match:
        raise UsageError(f"--older-than {text!r}: write a number and a unit, e.g. 90s, 30m, 12h, 7d or 2w")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds > MAX_AGE:
        raise UsageError(f"--older-than {text.strip()}: more than {MAX_AGE // _UNITS['d'] // 365:.0f} years; nothing captured is that old")
    return seconds


def _mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1048576:.1f} MiB"


def _open(folder: Path, write: bool = False):
    from mldeploy.capture import CaptureStore

    return CaptureStore(folder, write=write) if folder.exists() else _missing(folder)


def _missing(folder: Path):
    raise UsageError(f"capture folder {folder} does not exist")


@app.command("list")
def list_requests(
    folder: FolderArgument,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Only this model's requests.", show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show the newest N requests.")] = 20,
    output: FormatOption = ListFormat.table,
) -> None:
    """The newest captured requests: number, time, model and version that answered, route, size, boxes, shadow state.

    Examples:
        mldeploy capture list ./capture
        mldeploy capture list ./capture -m faces -n 100 --format json
    """
    from rich.table import Table

    store = _open(folder)
    try:
        records = store.records(model=model, limit=limit, newest_first=True)
    finally:
        store.close()
    rows = [{"id": r.id, "captured_at": r.captured_at, "model": r.model, "version": r.version, "route": r.route, "bytes": r.bytes,
             "sha256": r.sha256, "boxes": len(r.answer), "inference_ms": round(r.seconds * 1000, 2), "shadow": r.shadow,
             "shadow_state": r.shadow_state} for r in records]
    if output is ListFormat.json:
        typer.echo(json.dumps({"folder": str(folder), "requests": rows}, indent=2))
        return
    table = Table(title=f"capture {folder}: newest {len(rows)} requests", title_justify="left")
    for column in ("#", "captured (UTC)", "answered by", "route", "size", "boxes", "shadow"):
        table.add_column(column, no_wrap=column != "shadow", justify="right" if column in ("#", "size", "boxes") else "left")
    for row in rows:
        shadow = f"{row['shadow']}: {row['shadow_state']}" if row["shadow"] else "-"
        table.add_row(str(row["id"]), row["captured_at"][:19].replace("T", " "), f"{row['model']}@{row['version']}", row["route"],
                      f"{row['bytes'] / 1024:.0f} KiB", str(row["boxes"]), shadow)
    out_console().print(table)


@app.command("summary")
def summary(folder: FolderArgument, output: FormatOption = ListFormat.table) -> None:
    """What a capture holds: requests and bytes against the budget, per model and version the time span,
    and each live shadow's coverage (captured, compared, errors, pending, evicted).

    Examples:
        mldeploy capture summary ./capture
    """
    from rich.table import Table

    store = _open(folder)
    try:
        info = store.summary()
    finally:
        store.close()
    if output is ListFormat.json:
        typer.echo(json.dumps(info, indent=2))
        return
    # The figures first: a long folder name wraps at the terminal's width, and must not split them.
    out_console().print(f"{info['requests']} requests, {info['images']} distinct images, "
                      f"{_mib(info['bytes'])} of a {_mib(info['budget_bytes'])} budget: capture {folder}")
    if info["groups"]:
        table = Table(title="requests", title_justify="left")
        for column in ("answered by", "route", "requests", "first (UTC)", "last (UTC)"):
            table.add_column(column, justify="right" if column == "requests" else "left")
        for g in info["groups"]:
            table.add_row(f"{g['model']}@{g['version']}", g["route"], str(g["requests"]), g["first"][:19].replace("T", " "), g["last"][:19].replace("T", " "))
        out_console().print(table)
    counters = [c for c in info["counters"] if c["shadow"]]
    evicted = sum(c["evicted"] for c in info["counters"])
    if counters:
        table = Table(title="live shadow coverage", title_justify="left")
        for column in ("live", "shadow", "captured", "compared", "errors", "pending", "evicted"):
            table.add_column(column, justify="left" if column in ("live", "shadow") else "right")
        for c in counters:
            table.add_row(f"{c['model']}@{c['live']}", f"{c['model']}@{c['shadow']}", *(str(c[k]) for k in ("captured", "compared", "errors", "pending", "evicted_pending")))
        out_console().print(table)
    out_console().print(f"evicted by the budget so far: {evicted} requests")


@app.command("prune")
def prune(
    folder: FolderArgument,
    older_than: Annotated[Optional[str], typer.Option("--older-than", metavar="AGE", show_default=False, help="Remove requests captured more than AGE ago (7d, 12h, 30m).")] = None,
    max_mb: Annotated[Optional[float], typer.Option("--max-mb", min=0, show_default=False, help="Remove the oldest requests until the images take at most this much.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", show_default=False, help="Only this model's requests.")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Remove every request (of --model, if given).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go; remove nothing.")] = False,
) -> None:
    """Remove captured requests, oldest first (their images go with their last request). Safe while a server writes to it.

    Examples:
        mldeploy capture prune ./capture --older-than 7d --dry-run
        mldeploy capture prune ./capture --max-mb 500
    """
    if older_than is None and max_mb is None and not everything:
        raise UsageError("say what to prune: --older-than AGE, --max-mb N or --all")
    age = parse_age(older_than) if older_than is not None else None
    store = _open(folder, write=True)  # a dry run deletes inside a transaction it rolls back
    try:
        removed, freed = store.prune(older_than=age, keep_bytes=int(max_mb * 1048576) if max_mb is not None else None, model=model,
                                     everything=everything, dry_run=dry_run)
    finally:
        store.close()
    verb = "would remove" if dry_run else "removed"
    out_console().print(f"{verb} {removed} requests, {_mib(freed)} of images, from {folder}")
