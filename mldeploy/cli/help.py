"""Help that reads as well in a CI log as on a terminal, and one-line usage errors.

Plain text, built here instead of by typer's rich help: no ``typer.rich_utils`` or ``rich.markdown``
import (``mldeploy --help`` stays fast), no boxes a log shows as noise, no Python types. Options are
grouped in sections by their ``rich_help_panel``; descriptions are wrapped at word boundaries (never
inside a flag); a docstring's ``Examples:`` and ``Exit codes:`` paragraphs become sections of their own,
their lines kept as written; other paragraphs are re-wrapped to the width.

Width: the terminal's (at most :data:`MAX_WIDTH`), else ``COLUMNS``, else :data:`MAX_WIDTH`.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from enum import Enum

from typer import _click as click  # typer 0.29 runs on its own copy of click
from typer._click import exceptions as click_exceptions
import typer
from typer.core import TyperCommand, TyperGroup

MAX_WIDTH = 100
#: The widest first column (flag and value); a longer one puts its description on the next line.
NAME_COLUMN = 30
#: Docstring paragraphs kept line by line, as sections.
VERBATIM = ("Examples:", "Exit codes:")


def width(ctx: click.Context | None = None) -> int:
    if ctx is not None and ctx.terminal_width:
        return ctx.terminal_width
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 20:
        return int(columns)
    if sys.stdout.isatty():
        return min(shutil.get_terminal_size().columns, MAX_WIDTH)
    return MAX_WIDTH


def _fill(text: str, columns: int, indent: str = "", first: str | None = None) -> list[str]:
    return textwrap.wrap(text, max(columns, 20), initial_indent=indent if first is None else first, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False) or [first or indent]


def _plain(text: str | None) -> str:
    """Help text without the rich escapes (``\\[default: x]``) option helps were written with."""
    return " ".join((text or "").replace("\\[", "[").split())


def paragraphs(doc: str | None) -> list[tuple[str | None, list[str]]]:
    """A docstring as (section, lines): section None for prose (lines to be re-wrapped), else the
    heading of a verbatim paragraph and its lines, dedented."""
    doc = textwrap.dedent(doc or "").split("\f", 1)[0]
    out: list[tuple[str | None, list[str]]] = []
    for block in (b for b in doc.strip().split("\n\n") if b.strip()):
        lines = textwrap.dedent(block.strip("\n")).splitlines()
        head = lines[0].strip()
        if head in VERBATIM:
            out.append((head.rstrip(":"), [line.rstrip() for line in textwrap.dedent("\n".join(lines[1:])).splitlines() if line.strip()]))
        else:
            out.append((None, [" ".join(block.split())]))
    return out


def summary(doc: str | None) -> str:
    """A command's one-line description: its docstring's first sentence."""
    first = next((lines[0] for section, lines in paragraphs(doc) if section is None), "")
    cut = first.find(". ")
    return first if cut < 0 else first[: cut + 1]


#: typer's type names (``<float range>``) as a user reads them.
TYPE_NAMES = {"float": "NUMBER", "float range": "NUMBER", "int": "N", "int range": "N", "path": "PATH", "str": "TEXT"}


def metavar(param, ctx: click.Context) -> str:
    if param.metavar:
        return param.metavar
    shown = (param.display_type(ctx) or "").strip("<>")
    return TYPE_NAMES.get(shown, shown.upper() if "|" not in shown else shown)


def _default(param) -> str:
    notes = []
    default = param.default
    if isinstance(default, Enum):
        default = default.value
    if param.required:
        notes.append("required")
    elif not param.is_flag and default not in (None, (), [], "") and "[default" not in (param.help or ""):
        notes.append(f"default: {default:g}" if isinstance(default, float) else f"default: {default}")
    if param.envvar:
        notes.append(f"env: {param.envvar if isinstance(param.envvar, str) else ' or '.join(param.envvar)}")
    return f" [{'; '.join(notes)}]" if notes else ""


def argument_name(param) -> str:
    name = (param.metavar or param.name.upper()).strip("[].")
    return name + ("..." if param.nargs == -1 else "")


def option_row(param, ctx: click.Context) -> tuple[str, str]:
    if param.param_type_name == "argument":
        return argument_name(param), _plain(getattr(param, "help", ""))
    names = ", ".join(sorted(param.opts, key=len))
    if param.is_flag and param.secondary_opts:
        names = "/".join([*param.opts, *param.secondary_opts])
    elif not param.is_flag:
        names += " " + metavar(param, ctx)
    return names, _plain(param.help) + _default(param)


def definitions(rows: list[tuple[str, str]], columns: int) -> list[str]:
    """``  NAME   description`` rows; a description wraps under itself, a name too long for its column
    puts the description on the next line."""
    name_width = min(max((len(name) for name, _ in rows), default=0), NAME_COLUMN)
    indent = " " * (2 + name_width + 2)
    lines: list[str] = []
    for name, text in rows:
        if len(name) <= name_width:
            lines += _fill(text, columns, indent, first=f"  {name.ljust(name_width)}  ")
        else:
            lines.append(f"  {name}")
            lines += _fill(text, columns, indent) if text else []
    return lines


def usage(ctx: click.Context, command) -> str:
    params = command.get_params(ctx)
    pieces = [f"{max(p.opts, key=len)} {metavar(p, ctx)}" for p in params if p.param_type_name == "option" and p.required]
    pieces.append("[OPTIONS]")
    for p in params:
        if p.param_type_name == "argument":
            pieces.append(argument_name(p) if p.required else f"[{argument_name(p)}]")
    if isinstance(command, TyperGroup):
        pieces.append("COMMAND [ARGS]...")
    return f"Usage: {ctx.command_path} {' '.join(pieces)}"


def render(ctx: click.Context, command: click.Command) -> str:
    columns = width(ctx)
    lines = [usage(ctx, command), ""]
    verbatim: list[tuple[str, list[str]]] = []
    for section, body in paragraphs(command.help):
        if section is None:
            lines += _fill(body[0], columns, "  ") + [""]
        else:
            verbatim.append((section, body))
    for section, body in verbatim:
        if section == "Examples":
            lines += [f"{section}:", *(f"  {line}" for line in body), ""]
    panels: dict[str, list[tuple[str, str]]] = {}
    for param in command.get_params(ctx):
        if param.param_type_name == "argument":
            panels.setdefault("Arguments", []).append(option_row(param, ctx))
        elif not param.hidden:
            panels.setdefault(getattr(param, "rich_help_panel", None) or "Options", []).append(option_row(param, ctx))
    if isinstance(command, TyperGroup):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                panels.setdefault(getattr(sub, "rich_help_panel", None) or "Commands", []).append((name, summary(sub.help)))
    order = ["Arguments", "Options", "Commands"]
    for panel in sorted(panels, key=lambda p: order.index(p) if p in order else len(order)):
        lines += [f"{panel}:", *definitions(panels[panel], columns), ""]
    for section, body in verbatim:
        if section != "Examples":
            lines += [f"{section}:", *(f"  {line}" for line in body), ""]
    return "\n".join(lines).rstrip() + "\n"


def one_line(message: str) -> str:
    return " ".join(message.split())


class _Help:
    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write(render(ctx, self))

    def get_usage(self, ctx: click.Context) -> str:
        return usage(ctx, self)


class Command(_Help, TyperCommand):
    """A command whose help is :func:`render`'s."""


class Group(_Help, TyperGroup):
    """The command line's root (and ``models``, ``capture``): :func:`render`'s help, and usage errors
    as one line on stderr with exit 2, the way every other error reads."""

    def parse_args(self, ctx, args):
        # typer builds a pydantic validator (a 55 ms import) for the root's flags on every run, only to
        # pass their None through: they hold a bool or nothing, which needs no validator.
        from typer._coercion import PassThroughRuntimeParam

        for param in self.get_params(ctx):
            descriptor = getattr(param, "type_descriptor", None)
            if descriptor is not None and descriptor.annotation is bool and getattr(param, "_runtime_param", False) is None:
                param._runtime_param = PassThroughRuntimeParam(param.type_descriptor.parameter_info, param.type_descriptor.annotation)
        return super().parse_args(ctx, args)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_exceptions.NoArgsIsHelpError as exc:  # a bare command: its help, exit 2 (click's own)
            exc.show()
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            from mldeploy.cli.console import error_line, escape

            hint = f" (see {exc.ctx.command_path} --help)" if getattr(exc, "ctx", None) is not None else ""
            error_line(escape(one_line(exc.format_message()) + hint))
            sys.exit(exc.exit_code)
        except typer.Abort:
            from mldeploy.cli.console import error_line

            error_line("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)
