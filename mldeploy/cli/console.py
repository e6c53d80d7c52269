"""Consoles and the error boundary shared by every command."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from typing import Callable, Iterator

import typer
from rich.console import Console
from typer.core import TyperArgument

from mldeploy.errors import MldeployError

# typer 0.29 prints an argument's Python type beside its name in help (PATH... <list[str]>); the name
# (an upper-case metavar) says what to type, and the type is noise to a user. Display only.
TyperArgument.display_type_rich = lambda self, ctx: None

#: The width of output that is not a terminal (a CI log, a file) when ``COLUMNS`` does not say: wide
#: enough that no table is folded; a log has no right edge.
LOG_WIDTH = 1000


def log_width(stream) -> int | None:
    """None on a terminal (rich asks it), else ``COLUMNS``, else :data:`LOG_WIDTH`: never rich's 80."""
    try:
        if stream.isatty():
            return None
    except (AttributeError, ValueError):
        pass
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else LOG_WIDTH


def rows_layout(table):
    """A table too wide for the width as one line per row (``name: header value, header value``), under
    its title: every figure kept, nothing cut. Printed soft-wrapped (:class:`LogConsole`)."""
    from rich.text import Text

    def plain(cell) -> str:
        text = cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain if isinstance(cell, str) else str(cell)
        return " ".join(text.split())

    columns = table.columns
    headers = [plain(column.header) for column in columns]
    lines = [plain(table.title)] if table.title else []
    for row in zip(*(column._cells for column in columns)):
        cells = [plain(cell) for cell in row]
        name, rest = cells[0], list(zip(headers[1:], cells[1:]))
        if headers[0] and headers[0] != name:
            name = f"{headers[0]} {name}"
        lines.append(f"  {name}: " + ", ".join(f"{h} {c}" if h else c for h, c in rest if c))
    if table.caption:
        lines.append(plain(table.caption))
    return _Rows(escape("\n".join(lines)))


def least_width(console: Console, table) -> int:
    """The narrowest ``table`` can be drawn without cutting anything: a column that may wrap needs its
    longest word, a ``no_wrap`` one its widest cell (rich would cut or drop columns to go under this)."""
    from rich.measure import Measurement

    options = console.options.update(width=LOG_WIDTH)
    total = 0
    for column in table.columns:
        cells = [column.header, *column._cells]
        sizes = [Measurement.get(console, options, cell if not isinstance(cell, str) else console.render_str(cell)) for cell in cells]
        need = max((s.maximum if column.no_wrap else s.minimum) for s in sizes)
        total += max(need, column.min_width or 0) + 2  # the cell's padding, one space each side
    return total + len(table.columns) + 1  # the borders between and around the columns


class _Rows(str):
    """Text of :func:`rows_layout`: printed soft-wrapped, a row a line however long."""


class LogConsole(Console):
    """A rich Console whose output reads in a CI log as well as on a terminal: when the stream is not a
    terminal its width is ``COLUMNS`` or :data:`LOG_WIDTH` (not 80), and a table that cannot fit the width
    without cutting a word is printed one line per row instead (:func:`rows_layout`); a table that fits
    folds its cells between words, never inside one."""

    def print(self, *objects, **kwargs):
        if not any(type(o).__name__ == "Table" for o in objects):
            return super().print(*objects, **kwargs)
        for o in objects:
            fitted = self._fit(o)
            super().print(fitted, **({**kwargs, "soft_wrap": True} if isinstance(fitted, _Rows) else kwargs))

    def _fit(self, obj):
        from rich.table import Table

        if not isinstance(obj, Table):
            return obj
        if least_width(self, obj) > self.width:
            return rows_layout(obj)
        if self.is_terminal or not (obj.title or obj.caption):
            return obj
        # In a log, title and caption are lines of their own: a table's title is wrapped at the table's
        # width, and a verdict in it (the gates table's) must stay on one line for grep.
        import copy

        from rich.console import Group
        from rich.text import Text

        bare = copy.copy(obj)
        bare.title = bare.caption = None
        parts = [Text.from_markup(obj.title) if isinstance(obj.title, str) else obj.title, bare] if obj.title else [bare]
        if obj.caption:
            parts.append(Text.from_markup(obj.caption) if isinstance(obj.caption, str) else obj.caption)
        return Group(*parts)


#: Machine-readable output (JSON, CSV) and tables go to stdout; everything else goes here, a message a
#: line (soft wrap: a verdict is never split over two lines, whatever the width).
err_console = LogConsole(stderr=True, highlight=False, soft_wrap=True, width=log_width(sys.stderr))


class _State:
    debug: bool = bool(os.environ.get("MLDEPLOY_DEBUG"))


state = _State()


def out_console() -> Console:
    # Built per call so that CliRunner's captured stdout is honoured.
    return LogConsole(file=sys.stdout, highlight=False, soft_wrap=False, width=log_width(sys.stdout))


def error_line(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True, emoji=False)


@contextlib.contextmanager
def error_boundary() -> Iterator[None]:
    """Turn a domain error into one red line on stderr and its exit code; tracebacks only with --debug."""
    try:
        yield
    except MldeployError as exc:
        if state.debug:  # the traceback, and still the exit code a script relies on
            err_console.print_exception()
        error_line(escape(str(exc)))
        raise typer.Exit(code=exc.exit_code) from None
    except KeyboardInterrupt:
        error_line("interrupted")
        raise typer.Exit(code=130) from None
    except (typer.Exit, typer.Abort, typer.exceptions.TyperException):  # typer's own exits and usage errors
        raise
    except Exception as exc:  # a bug of ours or a library's: still one line, unless --debug
        if state.debug:
            err_console.print_exception()
        error_line(escape(f"unexpected {type(exc).__name__}: {exc}" + ("" if state.debug else " (run with --debug for the traceback)")))
        raise typer.Exit(code=1) from None


def guarded(func: Callable) -> Callable:
    """``func`` inside :func:`error_boundary` (its signature, which typer reads, unchanged)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with error_boundary():
            return func(*args, **kwargs)

    return wrapper


class App(typer.Typer):
    """A Typer app whose every command and callback runs inside :func:`error_boundary`: the error
    boundary is applied here, once, instead of in each command. Help and usage errors are
    :mod:`mldeploy.cli.help`'s: plain text, without rich's boxes or its import time."""

    def __init__(self, *args, **kwargs):
        from mldeploy.cli import help as help_

        kwargs.setdefault("cls", help_.Group)
        kwargs.setdefault("rich_markup_mode", None)
        super().__init__(*args, **kwargs)

    def command(self, *args, **kwargs):
        from mldeploy.cli import help as help_

        kwargs.setdefault("cls", help_.Command)
        register = super().command(*args, **kwargs)
        return lambda func: register(guarded(func))

    def callback(self, *args, **kwargs):
        register = super().callback(*args, **kwargs)
        return lambda func: register(guarded(func))


def escape(text: str) -> str:
    """Make user text (file names, error messages) safe to print through rich markup."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


@contextlib.contextmanager
def loading_status(spec) -> Iterator[None]:
    """``loading faces@v2 (mtcnn) ...`` on stderr while a model loads: a spinner on a terminal, a line in
    a log. A TensorFlow model takes seconds, and a silent pause looks like a hang."""
    if spec is None:
        yield
        return
    what = f"loading {escape(spec.ref)} ({escape(spec.backend)}) ..."
    if not err_console.is_terminal:
        err_console.print(what)
        yield
        return
    with err_console.status(what, spinner="dots"):
        yield


#: How a verdict's first word is coloured on a terminal (in a log, colour is dropped and the line stays one line).
VERDICT_COLOURS = {"PASS": "bold green", "FAIL": "bold red", "INCONCLUSIVE": "bold red", "REPORT ONLY": "bold yellow"}


def verdict_line(line: str) -> None:
    """The verdict, as the last line of stderr: one line (never wrapped), its status word coloured."""
    head, _, rest = line.partition(": ")
    err_console.print(f"[{VERDICT_COLOURS.get(head.split(' (')[0], 'bold')}]{escape(head)}:[/] {escape(rest)}")


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class LogProgress:
    """Progress as plain lines for a log: ``shadow: 120/400 images (30%), 3.4 images/s, about 1 min 22 s
    left``, at every tenth of the run or every ``at_most`` seconds, whichever comes first, but never within
    ``at_least`` seconds of the previous line (a short run prints nothing); a last line when a run that
    printed one ends. ``clock`` is injected by tests."""

    def __init__(self, name: str, total: int, write: Callable[[str], None], clock: Callable[[], float] = time.monotonic,
                 at_most: float = 30.0, at_least: float = 5.0) -> None:
        self.name, self.total, self.write, self.clock = name, total, write, clock
        self.at_most, self.at_least = at_most, at_least
        self.done = 0
        self.started = self.last = clock()
        self.next_mark = 1
        self.printed = False

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        tenth = self.done * 10 // self.total
        due = now - self.last >= self.at_most or (tenth >= self.next_mark and now - self.last >= self.at_least)
        if due and self.done < self.total:
            self._line(now)
        if tenth >= self.next_mark:
            self.next_mark = tenth + 1

    def _line(self, now: float) -> None:
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = f", about {duration((self.total - self.done) / rate)} left" if rate > 0 and self.done < self.total else ""
        pace = f"{rate:.1f} images/s" if rate >= 1 else f"{elapsed / self.done:.1f} s an image"
        self.write(f"{self.name}: {self.done}/{self.total} images ({self.done * 100 // self.total}%), {pace}{left}")
        self.last, self.printed = now, True

    def finish(self) -> None:
        if self.printed:
            now = self.clock()
            self.write(f"{self.name}: {self.done}/{self.total} images in {duration(now - self.started)}")


class progress_bar:
    """``with progress_bar(name, enabled) as progress``: ``progress.start(total)`` once the images are
    listed, then ``progress(result)`` per image. A rich bar on stderr when it is a terminal; else plain
    lines at a steady pace (:class:`LogProgress`); nothing for one image or with ``--no-progress``."""

    def __init__(self, name: str, enabled: bool, total: int | None = None) -> None:
        self.name, self.enabled, self._bar, self._task, self._log = name, enabled, None, None, None
        self._first_total = total

    def __enter__(self) -> "progress_bar":
        if self._first_total is not None:
            self.start(self._first_total)
        return self

    def start(self, total: int) -> None:
        if not (self.enabled and total > 1) or self._bar is not None or self._log is not None:
            return
        if not err_console.is_terminal:
            self._log = LogProgress(self.name, total, lambda line: err_console.print(escape(line)))
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn(self.name), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err_console, transient=True)
        self._bar.__enter__()
        self._task = self._bar.add_task(self.name, total=total)

    def __call__(self, *_) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)
        elif self._log is not None:
            self._log.advance()

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        elif self._log is not None and exc[0] is None:
            self._log.finish()
        return False
