import pytest
import typer

from mldeploy.cli.console import error_boundary, state
from mldeploy.errors import ModelUnavailableError


def test_domain_errors_become_their_exit_code_and_one_line(capsys):
    with pytest.raises(typer.Exit) as exit_info:
        with error_boundary():
            raise ModelUnavailableError("x@v1 cannot load: missing [weights].bin")
    assert exit_info.value.exit_code == 4
    err = capsys.readouterr().err
    assert err.strip() == "error: x@v1 cannot load: missing [weights].bin"  # markup-like text kept as is


def test_unexpected_errors_are_one_line_too_unless_debug(capsys):
    with pytest.raises(typer.Exit) as exit_info:
        with error_boundary():
            raise RuntimeError("surprise")
    assert exit_info.value.exit_code == 1
    assert capsys.readouterr().err.strip() == "error: unexpected RuntimeError: surprise (run with --debug for the traceback)"
    state.debug = True
    try:
        with pytest.raises(RuntimeError):
            with error_boundary():
                raise RuntimeError("surprise")
    finally:
        state.debug = False


# -- output for a log ---------------------------------------------------------------------------------
import io  # noqa: E402

from rich.table import Table  # noqa: E402

from mldeploy.cli.console import LogConsole, LogProgress, duration, least_width, log_width  # noqa: E402


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def progress(total, seconds_each, **kwargs):
    """The lines a run of ``total`` images at ``seconds_each`` prints, on a clock the test moves."""
    clock, lines = FakeClock(), []
    log = LogProgress("shadow", total, lines.append, clock, **kwargs)
    for _ in range(total):
        clock.now += seconds_each
        log.advance()
    log.finish()
    return lines


def test_a_long_run_prints_a_line_at_each_tenth():
    lines = progress(400, 1.0)  # 400 s: a tenth every 40 s, and the 30 s pace in between
    assert lines[0] == "shadow: 30/400 images (7%), 1.0 images/s, about 6 min 10 s left"
    assert "shadow: 40/400 images (10%), 1.0 images/s, about 6 min 00 s left" in lines
    assert lines[-1] == "shadow: 400/400 images in 6 min 40 s"
    assert 10 <= len(lines) <= 24  # steady: never more than one line per 5 s, never silent for more than 30 s


def test_a_slow_run_is_never_silent_for_more_than_30_s_and_a_short_one_prints_nothing():
    slow = progress(5, 100.0)  # a tenth is a fifth of the run here: a line after each image
    assert slow[0] == "shadow: 1/5 images (20%), 100.0 s an image, about 6 min 40 s left"
    assert len(slow) == 4 + 1
    assert progress(300, 0.01) == []  # 3 s in all: a log needs no progress for that
    fast = progress(1000, 0.01)  # 10 s: tenths come every second, a line at most every 5 s
    assert fast == ["shadow: 600/1000 images (60%), 100.0 images/s, about 4 s left", "shadow: 1000/1000 images in 10 s"]


def test_durations_read_as_people_write_them():
    assert [duration(s) for s in (0.4, 42, 185, 3720)] == ["0 s", "42 s", "3 min 05 s", "1 h 02 min"]


def test_a_log_is_not_80_columns_wide(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert log_width(io.StringIO()) == 1000
    monkeypatch.setenv("COLUMNS", "120")
    assert log_width(io.StringIO()) == 120


def wide_table() -> Table:
    table = Table(title="per label: a title that is longer than the table itself is wide, by far")
    for name in ("label", "old", "new", "change", "match", "miss", "extra", "relab", "drift", "recall", "prec"):
        table.add_column(name, no_wrap=name != "label")
    table.add_row("a-long-label-name", "3", "2", "-1", "2", "1", "0", "0", "1", "0.667", "1.000")
    return table


def render(width) -> str:
    out = io.StringIO()
    LogConsole(file=out, width=width, highlight=False).print(wide_table())
    return out.getvalue()


def test_a_table_that_fits_is_drawn_with_its_title_on_a_line_of_its_own():
    text = render(200)
    assert text.splitlines()[0] == "per label: a title that is longer than the table itself is wide, by far"
    row = next(line for line in text.splitlines() if "a-long-label-name" in line)
    assert [c.strip() for c in row.strip("│").split("│")] == ["a-long-label-name", "3", "2", "-1", "2", "1", "0", "0", "1", "0.667", "1.000"]


def test_a_table_that_cannot_fit_becomes_one_line_a_row_with_every_figure():
    assert least_width(LogConsole(file=io.StringIO(), width=60), wide_table()) > 60
    text = render(60)
    assert "…" not in text
    assert "  label a-long-label-name: old 3, new 2, change -1, match 2, miss 1, extra 0, relab 0, drift 1, recall 0.667, prec 1.000" in text
