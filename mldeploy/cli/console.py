"""Consoles and the error boundary shared by every command."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from typing import Callable, Iterator

import typer
from rich.console import Console
from typer.core import TyperArgument

from mldeploy.errors import MldeployError

# typer 0.29 prints an argument's Python type beside its name in help (PATH... <list[str]>); the name
# (an upper-case metavar) says what to type, and the type is noise to a user. Display only.
TyperArgument.display_type_rich = lambda self, ctx: None

#: Machine-readable output (JSON, CSV) and tables go to stdout; everything else goes here.
err_console = Console(stderr=True, highlight=False)


class _State:
    debug: bool = bool(os.environ.get("MLDEPLOY_DEBUG"))


state = _State()


def out_console() -> Console:
    # Built per call so that CliRunner's captured stdout is honoured.
    return Console(file=sys.stdout, highlight=False, soft_wrap=False)


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
    """``loading faces@v2 (mtcnn)...`` on stderr while a model loads, when stderr is a terminal: a
    TensorFlow model takes seconds, and a silent pause looks like a hang."""
    if spec is None or not err_console.is_terminal:
        yield
        return
    with err_console.status(f"loading {escape(spec.ref)} ({escape(spec.backend)})...", spinner="dots"):
        yield


class progress_bar:
    """``with progress_bar(name, enabled) as progress``: ``progress.start(total)`` once the images are
    listed, then ``progress(result)`` per image; a rich bar on stderr, or nothing (one image, no terminal,
    ``--no-progress``)."""

    def __init__(self, name: str, enabled: bool, total: int | None = None) -> None:
        self.name, self.enabled, self._bar, self._task = name, enabled, None, None
        self._first_total = total

    def __enter__(self) -> "progress_bar":
        if self._first_total is not None:
            self.start(self._first_total)
        return self

    def start(self, total: int) -> None:
        if not (self.enabled and total > 1 and err_console.is_terminal) or self._bar is not None:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn(self.name), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err_console, transient=True)
        self._bar.__enter__()
        self._task = self._bar.add_task(self.name, total=total)

    def __call__(self, *_) -> None:
        if self._bar is not None:
            self._bar.advance(self._task)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False
