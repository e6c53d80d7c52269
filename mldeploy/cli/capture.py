"""``mldeploy capture``: list, summarise and prune a capture folder (``mldeploy serve --capture DIR``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Optional

import typer

from mldeploy.cli.console import App, out_console
from mldeploy.cli.models import ListFormat
from mldeploy.cli.options import DEFAULT_MODEL, ConfigOption, StateDirOption
from mldeploy.errors import UsageError

app = App(help="List, summarise, label, export and prune what a server captured (serve --capture DIR).", add_completion=False)

FolderArgument = Annotated[Path, typer.Argument(metavar="DIR", help="A capture folder (what serve --capture wrote).", show_default=False)]
FormatOption = Annotated[ListFormat, typer.Option("--format", "-f", help="table for people, json for scripts.")]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


#: The oldest --older-than that means something (before it, the epoch: no capture is older).
MAX_AGE = 100 * 365 * 86400


def parse_age(text: str, flag: str = "--older-than") -> float:
    """``90s``, ``30m``, ``12h``, ``7d``, ``2w`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if not match:
        raise UsageError(f"{flag} {text!r}: write a number and a unit, e.g. 90s, 30m, 12h, 7d or 2w")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds > MAX_AGE:
        raise UsageError(f"{flag} {text.strip()}: more than {MAX_AGE // _UNITS['d'] // 365:.0f} years; nothing captured is that old")
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
    out_console().print(f"{info['requests']} requests, {info['images']} distinct images ({info['labelled_images']} labelled, "
                      f"{info['label_batches']} batches), {_mib(info['bytes'])} of a {_mib(info['budget_bytes'])} budget: capture {folder}")
    if info["groups"]:
        table = Table(title="requests", title_justify="left")
        for column in ("answered by", "route", "requests", "labelled", "first (UTC)", "last (UTC)"):
            table.add_column(column, justify="right" if column in ("requests", "labelled") else "left")
        for g in info["groups"]:
            table.add_row(f"{g['model']}@{g['version']}", g["route"], str(g["requests"]), str(g["labelled"]), g["first"][:19].replace("T", " "),
                          g["last"][:19].replace("T", " "))
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


@app.command("label")
def label(
    folder: FolderArgument,
    labels: Annotated[Path, typer.Option("--labels", metavar="FILE", show_default=False,
                                         help="Labels of captured images: COCO .json, a YOLO folder or data.yaml, or a VOC folder (as eval reads them).")],
    images: Annotated[Optional[Path], typer.Option("--images", metavar="DIR", show_default=False,
                                                   help="The labelled image files, when their names are neither digests nor request ids: matched by their SHA-256.")] = None,
    names: Annotated[Optional[Path], typer.Option("--names", metavar="FILE", show_default=False, help="YOLO class names, one per line.")] = None,
    output: FormatOption = ListFormat.table,
) -> None:
    """Attach ground truth that arrived later to the captured requests it describes.

    An entry finds its image by the labelled file's SHA-256 (--images), by its name when that is the
    image's digest (what 'capture export' writes; 12 hex digits at least), or by a request id a client
    sent (X-Request-Id). Labelling an image again replaces its truth. Entries that find no captured
    image are named and counted, and nothing is guessed.

    Examples:
        mldeploy capture label ./capture --labels reviewed/instances.json
        mldeploy capture label ./capture --labels batch2.json --images ./batch2-images

    Exit codes:
        0  every entry attached
        1  some entries found no captured image (each named); the others were attached
        2  usage error, or no entry found its image (nothing attached)
    """
    from mldeploy.capture.truth import attach_labels
    from mldeploy.cli.console import err_console, escape
    from mldeploy.truth.labels import load_labels

    if images is not None and not images.is_dir():
        raise UsageError(f"--images {images}: not a folder")
    labelset = load_labels(labels, names)
    store = _open(folder, write=True)
    try:
        done = attach_labels(store, labelset, images=images)
    finally:
        store.close()
    if output is ListFormat.json:
        typer.echo(json.dumps({"folder": str(folder), "labels": done.source, "batch": done.batch, "added": done.added, "replaced": done.replaced,
                               "by": done.by, "unmatched": [{"entry": p.entry, "file": p.file, "reason": p.message} for p in done.unmatched],
                               "skipped": [str(p) for p in done.problems]}, indent=2))
    else:
        for problem in done.unmatched[:20]:
            err_console.print(f"unmatched: {escape(problem.entry)}: {escape(problem.message)}")
        if len(done.unmatched) > 20:
            err_console.print(f"... and {len(done.unmatched) - 20} more unmatched entries (--format json lists every one)")
        for problem in done.problems[:20]:
            err_console.print(f"skipped: {escape(str(problem))}")
        how = ", ".join(f"{n} by {way}" for way, n in sorted(done.by.items()))
        out_console().print(f"labels batch {done.batch}: {done.matched} images labelled ({done.added} new, {done.replaced} replaced"
                            f"{'; ' + how if how else ''}), {len(done.unmatched)} entries unmatched: {escape(str(labels))} -> capture {escape(str(folder))}")
    if not done.matched:
        raise UsageError(f"none of the {len(labelset.images)} entries in {labels} found a captured image: nothing attached")
    if done.unmatched:
        raise typer.Exit(1)


@app.command("export")
def export(
    folder: FolderArgument,
    to: Annotated[Path, typer.Option("--to", metavar="DIR", show_default=False, help="A new (or empty) folder for the images and pre-annotations.")],
    most_disagreeing: Annotated[Optional[int], typer.Option("--most-disagreeing", metavar="N", min=1, show_default=False,
                                                            help="The N images where --new and the recorded answer disagree most.")] = None,
    least_confident: Annotated[Optional[int], typer.Option("--least-confident", metavar="N", min=1, show_default=False,
                                                           help="The N images whose recorded boxes are the least confident.")] = None,
    random: Annotated[Optional[int], typer.Option("--random", metavar="N", min=1, show_default=False,
                                                  help="N images drawn at random (--seed): the control for the other two.")] = None,
    model: Annotated[str, typer.Option("--model", "-m", metavar="NAME", help="The model whose requests are exported.")] = DEFAULT_MODEL,
    new: Annotated[Optional[str], typer.Option("--new", metavar="VERSION", show_default=False,
                                               help="A version run here on the images: its boxes go beside the recorded ones.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="coco|label-studio", help="coco: annotations.json (CVAT, FiftyOne import it); "
                                                                                          "label-studio: tasks.json with a prediction per version.")] = "coco",
    include_labelled: Annotated[bool, typer.Option("--include-labelled", help="Offer images that have labels already.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="The random draw's seed.")] = 0,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress on stderr.")] = True,
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Write the captured images most worth labelling, with both versions' boxes as pre-annotations.

    Images are named by their SHA-256, so the labels a reviewer exports come back with 'mldeploy
    capture label DIR --labels FILE' (matched by digest). manifest.csv says why each was chosen.

    Examples:
        mldeploy capture export ./capture -m faces --new v2 --most-disagreeing 50 --to review/
        mldeploy capture export ./capture -m faces --least-confident 50 --format label-studio --to review-ls/
        mldeploy capture export ./capture -m faces --random 50 --to control/

    Exit codes:
        0  written
        2  usage error, a --to folder that is not empty, or nothing left to review
        4  --new cannot be loaded
    """
    from mldeploy.capture import CaptureStore
    from mldeploy.capture.export import FORMATS, write_export
    from mldeploy.cli.console import err_console, escape, progress_bar
    from mldeploy.cli.options import project as make_project
    from mldeploy.errors import OutputError
    from mldeploy.rollout.feedback import choose_for_review

    given = [(name, n) for name, n in (("most-disagreeing", most_disagreeing), ("least-confident", least_confident), ("random", random)) if n]
    if len(given) != 1:
        raise UsageError("choose images one way: --most-disagreeing N, --least-confident N or --random N")
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose {' or '.join(FORMATS)}")
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        raise UsageError(f"--to {to}: not an empty folder; an export never writes over earlier work")
    if not folder.exists():
        _missing(folder)
    how, n = given[0]
    project = make_project(state_dir, config)
    with progress_bar("export", progress) as bar:
        chosen, classes = choose_for_review(project, folder, model, how, n, new=new, include_labelled=include_labelled, seed=seed,
                                            on_listed=bar.start, on_result=bar)
    store = CaptureStore(folder, write=False)
    try:
        written = write_export(to, chosen, store.read_blob, classes, fmt, how)
    except OutputError as exc:
        raise UsageError(str(exc)) from None
    finally:
        store.close()
    err_console.print(f"wrote {escape(str(written))}")
    out_console().print(f"exported {len(chosen)} images chosen by {how} ({fmt}) to {escape(str(to))}: label them, then "
                        f"'mldeploy capture label {escape(str(folder))} --labels FILE'")
