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
