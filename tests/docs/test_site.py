"""The documentation site (docs/, mkdocs.yml): it builds with ``mkdocs build --strict`` (no broken link,
anchor or page left out of the navigation), its reference pages are what docs/gen_reference.py writes
from the code today, and its runnable examples run on the sample images and print what they show
(tests/helpers/doc_examples.py says how they are marked and compared)."""

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, SAMPLES, subprocess_env
from tests.helpers.commands import parses
from tests.helpers.doc_examples import ELLIPSIS, Example, examples, mismatch, outputs, script, words

DOCS = REPO / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
RUNNABLE = [e for page in [REPO / "README.md", *PAGES] for e in examples(page, REPO)]


def gen_reference():
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_pages_are_what_the_code_says_today():
    pages = gen_reference().render()
    assert set(pages) == {p.name for p in (DOCS / "reference").glob("*.md")}
    stale = [name for name, text in pages.items() if (DOCS / "reference" / name).read_text() != text]
    assert stale == [], f"stale: {stale}; run .venv/bin/python docs/gen_reference.py"
    # and they say what the code says: every command, every gate
    from mldeploy.rollout.gates import GATES

    assert all(f"`{g.flag}`" in pages["gates.md"] for g in GATES.values())
    assert "## `mldeploy capture label`" in pages["commands.md"] and "## `mldeploy bench`" in pages["commands.md"]


def test_site_builds_strict(tmp_path):
    env = {**subprocess_env(), "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    site = tmp_path / "site"
    for page in ["index.html", "getting-started/index.html", "guides/rehearse/index.html", "reference/commands/index.html",
                 "reference/http-api/index.html", "concepts/storage/index.html", "deploy/index.html", "ci/github-actions.yml"]:
        assert (site / page).is_file(), page
    assert not (site / "gen_reference.py").exists()
    # no request leaves for a font or script host when the site is read offline
    assert "fonts.googleapis.com" not in (site / "index.html").read_text()


def test_the_strict_build_fails_on_a_broken_link(tmp_path):
    """The check bites: a page that links to nothing fails the build."""
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path)
    (tmp_path / "docs" / "index.md").write_text("# mldeploy\n\nSee [the guide](guides/nowhere.md).\n")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=tmp_path,
                          env={**subprocess_env(), "NO_MKDOCS_2_WARNING": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "nowhere.md" in done.stderr


_ROW_SEPARATOR = re.compile(r"\|(\s*:?-+:?\s*\|)+")
_LIST_ITEM = re.compile(r"\s*(?:[-*]|\d+\.) ")


def misrendered(text: str) -> list[str]:
    """Markdown that GitHub renders as meant but the site (Python-Markdown) does not: a table row cut
    off from its header by a blank line (a paragraph of pipes), a list glued to the paragraph above it
    (one paragraph with dashes in it). Outside fenced blocks."""
    found, in_table, fenced = [], False, False
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        if fenced:
            in_table = False
            continue
        if line.startswith("|"):
            starts_table = i + 1 < len(lines) and _ROW_SEPARATOR.fullmatch(lines[i + 1].strip()) is not None
            if not (in_table or starts_table):
                found.append(f"a row outside a table: {line[:50]}")
            in_table = True
            continue
        in_table = False
        above = lines[i - 1] if i else ""
        if _LIST_ITEM.match(line) and above.strip() and not _LIST_ITEM.match(above) and not above.startswith((" ", "<!--")):
            found.append(f"a list with no blank line above: {line[:50]}")
    if fenced:
        found.append("a fenced block that never ends (the rest of the page shows as text, and its commands go unchecked)")
    return found


def test_the_pages_render_on_the_site_as_on_github():
    assert misrendered("| a | b |\n|---|---|\n| 1 | 2 |\n\n| 3 | 4 |\n") == ["a row outside a table: | 3 | 4 |"]  # the check bites
    assert misrendered("It does:\n- this;\n- that.\n") == ["a list with no blank line above: - this;"]
    assert misrendered("Run:\n\n```bash\nmldeploy detect x\n") == ["a fenced block that never ends (the rest of the page shows as text, and its commands go unchecked)"]
    assert misrendered("```\n| not a table |\ntext\n- not a list\n```\n| a |\n|:--|\n| 1 |\n\nIt does:\n\n- this;\n- that,\n  and more.\n") == []
    pages = [REPO / "README.md", *sorted(DOCS.rglob("*.md"))]
    found = {page.relative_to(REPO).as_posix(): bad for page in pages if (bad := misrendered(page.read_text(encoding="utf-8")))}
    assert found == {}


def test_the_examples_are_many_and_spread():
    """Runnable examples exist where a user starts (so the test below cannot pass by having none)."""
    pages = {e.page.as_posix() for e in RUNNABLE}
    assert {"docs/getting-started.md", "docs/guides/detect.md", "docs/guides/rehearse.md", "README.md"} <= pages
    assert sum(len(e.commands) for e in RUNNABLE) >= 15
    assert sum(1 for e in RUNNABLE for c in e.commands if c.shown) >= 8


def _by_page():
    pages: dict[str, list[Example]] = {}
    for e in RUNNABLE:
        pages.setdefault(e.page.as_posix(), []).append(e)
    return pages


@pytest.mark.model
@pytest.mark.parametrize("page", sorted(_by_page()))
def test_runnable_examples_print_what_they_show(page, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(SAMPLES, work / "sample_images")
    (work / ".venv").symlink_to(Path(sys.prefix))  # the README's commands say .venv/bin/mldeploy
    bin_dir = str(Path(sys.executable).parent)
    env = {**subprocess_env(), "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "COLUMNS": "120", "NO_COLOR": "1",
           "TERM": "dumb", "PYTHONUNBUFFERED": "1"}
    for name in ("MLDEPLOY_STATE", "MLDEPLOY_STATE_DIR", "MLDEPLOY_CONFIG"):
        env.pop(name, None)
    failures = []
    for example in _by_page()[page]:
        done = subprocess.run(["bash", "-c", script(example)], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=900)
        for command, (code, printed) in zip(example.commands, outputs(done.stdout, example)):
            where = f"{page}:{command.line}: $ {command.text}"
            if code != 0:
                failures.append(f"{where}\n  exit {code}\n" + "\n".join(printed[-40:]))
            elif command.shown:
                wrong = mismatch(command.shown, printed, example.numbers_vary)
                if wrong:
                    failures.append(f"{where}\n  {wrong}\n  printed:\n" + "\n".join(printed[-60:]))
    assert not failures, "\n\n".join(failures)


# The comparison itself, on made-up output


def test_words_ignore_table_layout_but_not_content():
    assert words("│ astronaut.jpg │     1 │ face x1 │ 86 │", False) == ("astronaut.jpg", "1", "face", "x1", "86")
    assert words("┏━━━━┳━━━┓", False) == ()
    assert words("faces@v1 took 7.69x (5.38-7.72), 2026-11-24 16:42:05 #1", True) == ("faces@v1", "took", "#x", "(#-#),", "#-#-#", "#:#:#", "##")


def test_mismatch_finds_changed_words_and_missing_lines():
    printed = ["┏━━━━━━┓", "│ image │ found │", "│ a.jpg │ 1 │", "│ b.jpg │ 0 │", "└──────┘", "done in 3.2 s"]
    assert mismatch(["│ image │ found │", "│ a.jpg │ 1 │", "│ b.jpg │ 0 │", "done in 3.2 s"], printed, False) is None
    assert mismatch(["│ image │ found │", ELLIPSIS, "done in 9.9 s"], printed, True) is None
    assert mismatch(["│ image │ found │", ELLIPSIS, "done in 9.9 s"], printed, False) == "shown line not printed: 'done in 9.9 s'"
    assert mismatch(["│ image │ found │", "│ a.jpg │ 1 │", "done in 3.2 s"], printed, False) is not None  # b.jpg not shown, no ...
    assert mismatch(["│ image │ count │", ELLIPSIS], printed, True) == "shown line not printed: 'image count'"
    assert mismatch(["│ a.jpg │ 2 │", ELLIPSIS], printed[2:], True) is None  # counts vary too, when numbers vary
    assert mismatch(["│ image │ found │", ELLIPSIS, "done ... s"], printed, False) is None  # ... inside a line
    assert mismatch(["│ image │ found │", ELLIPSIS, "done ... ms"], printed, False) == "shown line not printed: 'done ... ms'"
    progress = ["shadow: 1/5 images (20%), 2.7 s an image, about 8 s left", *printed]
    assert mismatch(printed, progress, False) is None and mismatch(progress[:1] + printed, printed, False) is None


def test_a_block_runs_as_one_session_and_each_command_is_judged_alone(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("<!-- run -->\n```console\n$ sleep 30 &\n$ X=1; echo one\none\n$ echo $X; false\n$ echo after\n```\n")
    example = examples(page)[0]
    done = subprocess.run(["bash", "-c", script(example)], capture_output=True, text=True, timeout=20)
    assert outputs(done.stdout, example) == [(0, []), (0, ["one"]), (1, ["1"]), (0, ["after"])]  # and the sleep was stopped


def test_examples_are_parsed_from_marked_blocks_only(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("```bash\nmldeploy serve\n```\n\n<!-- run -->\n```console\n$ mldeploy detect x \\\n  --format json\n{}\n$ echo $?\n0\n```\n\n"
                    "<!-- run: numbers vary -->\n```bash\n# a comment\nmldeploy models\n\nmldeploy history\n```\n")
    found = examples(page)
    assert [e.numbers_vary for e in found] == [False, True]
    assert [(c.text, c.shown) for c in found[0].commands] == [("mldeploy detect x \n  --format json", ["{}"]), ("echo $?", ["0"])]
    assert [(c.line, c.text) for c in found[1].commands] == [(17, "mldeploy models"), (19, "mldeploy history")]
    page.write_text("<!-- run: fast -->\n```bash\nls\n```\n")
    with pytest.raises(ValueError, match="unknown run option"):
        examples(page)


# Examples that are not run (a server, a cluster, your own folders) still name commands and options
# that exist: each is parsed by mldeploy's own command line.

_FENCE = re.compile(r"^```(?:bash|console|sh)[ \t]*\n(.*?)^```", re.S | re.M)
_SHELL_END = re.compile(r"\s(?:\||>|2>|&&|&)(?:\s|$)|;")


def shown_commands() -> list[tuple[str, list[str]]]:
    found = []
    for page in [REPO / "README.md", *PAGES]:
        text = page.read_text(encoding="utf-8")
        for block in _FENCE.finditer(text):
            first = text.count("\n", 0, block.start(1)) + 1
            for i, line in enumerate(block.group(1).replace("\\\n", " ").splitlines()):
                line = line.removeprefix("$ ").strip()
                for prefix in (".venv/bin/mldeploy ", "mldeploy "):
                    if line.startswith(prefix):
                        line = line[len(prefix):]
                        break
                else:
                    continue
                line = re.split(r"\s+#\s", line)[0]
                line = _SHELL_END.split(line)[0]
                found.append((f"{page.relative_to(REPO)}:{first + i}", shlex.split(line)))
    return found


def test_every_command_the_docs_show_parses():
    commands = shown_commands()
    assert len(commands) > 80
    with pytest.raises(Exception, match="--no-such"):
        parses(["detect", "photos/", "--no-such"])  # the check bites
    wrong = []
    for where, argv in commands:
        try:
            parses(argv)
        except Exception as exc:  # click's usage errors, or a command that does not exist
            wrong.append(f"{where}: mldeploy {shlex.join(argv)}: {exc}")
    assert wrong == [], "\n".join(wrong)
