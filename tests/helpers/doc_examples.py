"""The runnable examples of the documentation: how they are marked, run and compared.

A fenced block right after ``<!-- run -->`` runs in the tests, on a copy of ``sample_images/``, in a
folder shared by the page's runnable blocks (so a page reads as one session: a promotion in one block
is live in the next):

- a ``console`` block: each ``$ command`` must exit 0 (an example that shows a failure says so in the
  command, ``mldeploy shadow ...; echo "exit $?"``); the lines after it, when there are any, are its
  shown output, compared with what it prints on stdout and stderr together;
- a ``bash`` block: each line (or ``\``-continued lines) must exit 0; no output is compared.

A block runs as one bash session, so ``mldeploy serve ... &`` in one command is there for the next
(``curl --retry-connrefused`` waits for it, ``kill %1`` stops it); jobs left running are stopped at
the block's end.

Comparison is by content, not by layout: every line is split into words, with the box-drawing
characters of a table and runs of spaces counted as separators, and lines that hold no word (a table's
rule, a blank line) are left out on both sides. A shown line ``...`` stands for any number of lines;
``...`` inside a line, for any text there (a CPU's name, a path on your machine). Progress lines
(``canary: 4/5 images (80%), 1.3 s an image, about 1 s left``) come when a run is slow enough to need
them, so they are left out on both sides.
``<!-- run: numbers vary -->`` compares numbers that stand alone (timings, dates, counts, figures) as
``#``, so they may differ, while the words, labels, versions (``faces@v2``), ``x1`` and the rest must
still be there, in order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_BLOCK = re.compile(r"^<!--\s*run(?::\s*(?P<opts>[^>]*?))?\s*-->[ \t]*\n```(?P<lang>[\w-]*)[ \t]*\n(?P<body>.*?)^```[ \t]*$", re.S | re.M)
_BOX = re.compile(r"[\u2500-\u257f]")  # rich's box-drawing characters
_NUMBER = re.compile(r"(?<![\w@.])\d+(?:\.\d+)?")  # 7.69, 2026, 16 (not the 1 of v1, x1 or faces@v1)
_PROGRESS = re.compile(r"^[\w-]+: \d+/\d+ images\b")
ELLIPSIS = "..."


@dataclass
class Command:
    line: int                    # where it is in the page (1-based)
    text: str
    shown: list[str] = field(default_factory=list)  # the output the page shows, if any


@dataclass
class Example:
    page: Path
    line: int
    numbers_vary: bool
    commands: list[Command]

    @property
    def name(self) -> str:
        return f"{self.page.as_posix()}:{self.line}"


def examples(page: Path, root: Path | None = None) -> list[Example]:
    """The runnable blocks of one page, in order."""
    text = page.read_text(encoding="utf-8")
    found = []
    for m in _BLOCK.finditer(text):
        opts = (m.group("opts") or "").strip()
        if opts not in ("", "numbers vary"):
            raise ValueError(f"{page}: unknown run option {opts!r}")
        first = text.count("\n", 0, m.start("body")) + 1
        lang = m.group("lang")
        if lang == "console":
            commands = _console(m.group("body"), first)
        elif lang == "bash":
            commands = _bash(m.group("body"), first)
        else:
            raise ValueError(f"{page}:{first}: a runnable block is console or bash, not {lang!r}")
        found.append(Example(page.relative_to(root) if root else page, first - 1, opts == "numbers vary", commands))
    return found


def _console(body: str, first: int) -> list[Command]:
    commands: list[Command] = []
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            start, text = i, line[2:]
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1] + "\n" + lines[i]
            commands.append(Command(first + start, text))
        elif commands:
            commands[-1].shown.append(line)
        elif line.strip():
            raise ValueError(f"line {first + i}: output before the first $ command")
        i += 1
    return commands


def _bash(body: str, first: int) -> list[Command]:
    commands: list[Command] = []
    pending: tuple[int, str] | None = None
    for i, line in enumerate(body.splitlines()):
        if pending is None and (not line.strip() or line.lstrip().startswith("#")):
            continue
        start, text = pending if pending else (first + i, "")
        text += line
        if text.endswith("\\"):
            pending = (start, text[:-1] + "\n")
            continue
        pending = None
        commands.append(Command(start, text))
    return commands


_SEPARATOR = "@@@ mldeploy-example exit"


def script(example: Example) -> str:
    """One bash script for the block: each command, then a line with its exit code."""
    parts = []
    for command in example.commands:
        parts.append(f"{command.text}\nprintf '\\n{_SEPARATOR} %s\\n' $?\n")
    parts.append("kill $(jobs -p) 2>/dev/null; wait 2>/dev/null\n")
    return "".join(parts)


def outputs(printed: str, example: Example) -> list[tuple[int | None, list[str]]]:
    """(exit code, printed lines) per command, from what :func:`script` printed; None for a command
    that never finished (the block stopped before it)."""
    found: list[tuple[int | None, list[str]]] = []
    lines: list[str] = []
    for line in printed.splitlines():
        if line.startswith(_SEPARATOR):
            found.append((int(line.split()[-1]), lines[:-1] if lines and not lines[-1] else lines))
            lines = []
        else:
            lines.append(line)
    if len(found) >= len(example.commands):
        return found
    return found + [(None, lines)] + [(None, [])] * (len(example.commands) - len(found) - 1)


def words(line: str, numbers_vary: bool) -> tuple[str, ...]:
    line = _BOX.sub(" ", line)
    if numbers_vary:
        line = _NUMBER.sub("#", line)
    return tuple(line.split())


def mismatch(shown: list[str], actual: list[str], numbers_vary: bool) -> str | None:
    """None when ``actual`` is what ``shown`` shows; else a short account of the first difference."""
    want = [ELLIPSIS if s.strip() == ELLIPSIS else " ".join(words(s, numbers_vary)) for s in shown]
    want = [w for w, s in zip(want, shown) if w and not _PROGRESS.match(s)]
    have = [h for h, a in zip((" ".join(words(a, numbers_vary)) for a in actual), actual) if h and not _PROGRESS.match(a)]
    if _glob(want, have):
        return None
    # the first shown line that is not found in order, for the message
    j = 0
    for w in want:
        if w == ELLIPSIS:
            continue
        while j < len(have) and not _same(w, have[j]):
            j += 1
        if j == len(have):
            return f"shown line not printed: {w!r}"
        j += 1
    return "the printed lines are not the shown ones (extra lines where no '...' is shown)"


def _glob(want: list, have: list) -> bool:
    """Lines matched in order, ``...`` standing for any run of lines (a glob over lines)."""
    # reach[j]: the first j printed lines are matched by the shown lines so far
    reach = [True] + [False] * len(have)
    for w in want:
        if w == ELLIPSIS:
            for j in range(1, len(have) + 1):
                reach[j] = reach[j] or reach[j - 1]
        else:
            reach = [False] + [reach[j - 1] and _same(w, have[j - 1]) for j in range(1, len(have) + 1)]
    return reach[-1]


def _same(shown: str, printed: str) -> bool:
    if ELLIPSIS not in shown:
        return shown == printed
    return re.fullmatch(".*?".join(re.escape(part) for part in shown.split(ELLIPSIS)), printed) is not None
