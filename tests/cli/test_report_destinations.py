"""A verdict is never lost to a report file: destinations are checked before the run, and a gate
failure's exit 3 and message survive a report that still cannot be written afterwards (issue 11)."""

import subprocess
import sys

import pytest

from mldeploy.errors import OutputError
from mldeploy.store import open_store
from tests.helpers import as_unprivileged, subprocess_env


def test_a_canary_with_a_foreign_html_folder_stops_before_it_promotes(cli, project_dir, tmp_path):
    foreign = tmp_path / "somebody-elses"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    result = cli("canary", "photos", "--new", "blind", "--gates", "none", "--html", foreign)
    assert result.exit_code == 2 and "folder with other files in it" in result.stderr
    assert open_store(project_dir / ".mldeploy").history() == [] and (foreign / "notes.txt").read_text() == "keep me"


def test_a_report_in_a_read_only_folder_is_refused_before_the_run(project_dir, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    command = as_unprivileged([sys.executable, "-m", "mldeploy", "shadow", "photos", "--new", "blind", "--junit", str(locked / "j.xml")])
    if command is None:
        pytest.skip("no setpriv: cannot run without root's permission override")
    try:
        result = subprocess.run(command, cwd=project_dir, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    finally:
        locked.chmod(0o755)
    assert result.returncode == 2 and "is not writable" in result.stderr and "FAIL" not in result.stderr  # nothing ran


def test_a_gate_failure_survives_a_report_that_cannot_be_written(cli, project_dir, tmp_path, monkeypatch):
    def disk_full(path, report, protect=()):
        raise OutputError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr("mldeploy.report.json_junit.write_junit", disk_full)  # the disk fills up during the run
    result = cli("shadow", "photos", "--new", "blind", "--junit", tmp_path / "j.xml", "--report", tmp_path / "r.json")
    assert result.exit_code == 3
    assert "No space left on device" in result.stderr and "gate failed: --min-recall" in result.stderr and "FAIL: " in result.stderr
    assert (tmp_path / "r.json").is_file()  # the other report was still written
