"""Every bracketed note in an option's help (``[default: ...]``, ``[capture] dir``) reaches the screen:
rich reads an unescaped ``[word]`` as markup and drops it without a word."""

import re

import pytest

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


def leaves(group, path=()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from leaves(command, (*path, name))
        else:
            yield (*path, name), command


def test_help_reads_in_a_log():
    """Every command's help, piped: no boxes, no Python types, a usage line as a user types it, examples,
    and every flag whole (never split at a hyphen)."""
    root = typer.main.get_command(app)
    runner = CliRunner()
    for path, command in leaves(root):
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": ""})
        text = result.output
        assert result.exit_code == 0, (path, text)
        assert not re.search(r"[│╭╰─]", text), path
        assert not re.search(r"<(float|int|str|bool|path|float range|int range|list\[str\])>", text), (path, text)
        usage = text.splitlines()[0]
        assert usage.startswith(f"Usage: mldeploy {' '.join(path)} ") and "[[" not in usage and "]...]" not in usage, usage
        assert "Examples:\n  mldeploy " in text, path
        words = set(text.split())
        for param in command.params:
            for flag in getattr(param, "opts", []) + getattr(param, "secondary_opts", []):
                if flag.startswith("--"):
                    assert any(w == flag or w.startswith(flag + "/") or w.startswith(flag + ",") for w in words) or flag in text, (path, flag)


def test_the_longest_help_is_about_two_screens():
    runner = CliRunner()
    for command in ("shadow", "canary"):
        lines = runner.invoke(app, [command, "--help"], env={"COLUMNS": ""}).output.splitlines()
        assert len(lines) <= 115, (command, len(lines))
        assert max(len(line) for line in lines) <= 100
    assert "Usage: mldeploy shadow --new VERSION [OPTIONS] [PATH...]" in runner.invoke(app, ["shadow", "--help"]).output


@pytest.mark.parametrize("args, start", [
    (["shadow", "--new", "v2", "--min-recall", "x", "photos"], "error: Invalid value for '--min-recall'"),
    (["shadow", "--nwe", "v2", "photos"], "error: No such option: --nwe"),
    (["shadow", "photos"], "error: Missing option '--new'"),
    (["nope"], "error: No such command 'nope'"),
])
def test_usage_errors_are_one_line_and_exit_2(args, start):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.startswith(start) and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "╭" not in result.stderr and "Usage:" not in result.stderr
