"""Every bracketed note in an option's help (``[default: ...]``, ``[capture] dir``) reaches the screen:
rich reads an unescaped ``[word]`` as markup and drops it without a word."""

import re

import typer.main
from typer.testing import CliRunner

from mldeploy.cli import app


def commands(group, path=()):
    for name, command in group.commands.items():
        yield (*path, name), command
        if hasattr(command, "commands"):
            yield from commands(command, (*path, name))


def test_bracketed_notes_in_help_are_shown():
    root = typer.main.get_command(app)
    runner = CliRunner()
    missing = []
    for path, command in commands(root):
        notes = [n for p in command.params for n in re.findall(r"\[([^\[\]]*(?:\[[^\]]*\][^\[\]]*)*)\]", getattr(p, "help", None) or "")]
        if not notes:
            continue
        shown = " ".join(runner.invoke(app, [*path, "--help"], env={"COLUMNS": "400"}, terminal_width=400).output.split())
        for note in notes:
            text = " ".join(note.replace("\\", "").split())
            if text and text not in shown:
                missing.append(f"mldeploy {' '.join(path)}: [{text}]")
    assert not missing, missing
