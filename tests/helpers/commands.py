"""A command line mldeploy accepts: parsed by its own Typer app (the click that typer vendors), not run."""

from __future__ import annotations

import shlex


def parses(argv: list[str]) -> None:
    """``argv`` (after ``mldeploy``) is accepted by mldeploy's command line; a usage error raises."""
    from typer.main import get_command

    from mldeploy.cli import app

    root = get_command(app)
    ctx = root.make_context("mldeploy", list(argv), resilient_parsing=False)
    command = root.get_command(ctx, argv[0])
    assert command is not None, argv[0]
    if hasattr(command, "get_command") and len(argv) > 1 and not argv[1].startswith("-"):  # a group: capture label, export argo
        sub_ctx = command.make_context(argv[0], list(argv[1:]), parent=ctx, resilient_parsing=True)
        sub = command.get_command(sub_ctx, argv[1])
        assert sub is not None, argv[1]
        sub.make_context(argv[1], list(argv[2:]), parent=sub_ctx)
        return
    command.make_context(argv[0], list(argv[1:]), parent=ctx)


def mldeploy_words(script: str, env: dict[str, str]) -> list[str]:
    """The words after ``mldeploy`` in a shell line, with ``$VAR`` and ``"$VAR"`` filled from ``env``."""
    words = shlex.split(script)
    words = [env.get(w[1:], w) if w.startswith("$") else w for w in words]
    return words[words.index("mldeploy") + 1:]
