"""What a user sees (issue 12): readable files, messages that say where things went, file names that
show at 80 columns and at any path depth, exit codes that survive --debug, help without Python types."""

import json
import os
import stat
import subprocess
import sys

from tests.helpers import subprocess_env


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_output_files_respect_the_umask_and_say_where_they_went(cli, project_dir, tmp_path):
    old = os.umask(0o022)
    try:
        result = cli("detect", "photos", "--save", tmp_path / "annotated")
        report = cli("shadow", "photos", "--new", "v1", "--html", tmp_path / "html", "--junit", tmp_path / "j.xml")
    finally:
        os.umask(old)
    assert result.exit_code == 0 and "saved 5 annotated images to " in result.stderr
    saved = sorted((tmp_path / "annotated").iterdir())
    assert len(saved) == 5 and {mode(p) for p in saved} == {0o644}  # mkstemp alone would leave 0600
    assert report.exit_code == 0
    assert mode(tmp_path / "html") == 0o755 and mode(tmp_path / "html" / "index.html") == 0o644 and mode(tmp_path / "j.xml") == 0o644


def test_file_names_show_in_an_80_column_table_however_deep_the_folder(cli, project_dir):
    deep = project_dir / "a-rather-long-folder-name-for-photos" / "of-the-team-offsite-in-the-mountains" / "2026-11" / "day-one"
    deep.mkdir(parents=True)
    for name in ("astronaut.jpg", "camera.jpg", "coffee.jpg"):
        (deep / name).write_bytes((project_dir / "photos" / name).read_bytes())
    result = cli("detect", str(deep))  # CliRunner's terminal is 80 columns wide
    assert result.exit_code == 0
    for name in ("astronaut.jpg", "camera.jpg", "coffee.jpg"):
        assert name in result.stdout
    assert "…" not in result.stdout.split("summary")[0]  # no row ends in an ellipsis


def test_shadow_tables_keep_their_headers_at_80_columns(cli, project_dir):
    result = cli("shadow", "photos", "--new", "faces-haar@default")
    text = result.stdout
    for header in ("match", "miss", "extra", "relab", "drift", "recall"):
        assert header in text
    assert "…" not in text


def test_debug_shows_the_traceback_and_keeps_the_exit_code(project_dir):
    (project_dir / "mldeploy.toml").write_text("[models.faces.v3\n")
    result = subprocess.run([sys.executable, "-m", "mldeploy", "--debug", "models"], cwd=project_dir, env=subprocess_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" in result.stderr and "not valid TOML" in result.stderr


def test_help_names_every_exit_code_and_no_python_type(cli):
    detect = " ".join(cli("detect", "--help").stdout.split())
    assert "5 the state store cannot be read" in detect
    for command in ("detect", "shadow", "canary", "serve", "models", "history", "route"):
        text = cli(command, "--help").stdout
        assert "list[" not in text and "<class" not in text and "{paths}" not in text, command


def test_the_canary_page_reads_like_a_person_wrote_it(cli, project_dir, tmp_path):
    result = cli("canary", "photos", "--new", "blind", "--steps", "20,50,100", "--gates", "none", "--min-recall", "0.9", "--dry-run",
                 "--html", tmp_path / "html")
    assert result.exit_code == 3
    page = (tmp_path / "html" / "index.html").read_text()
    assert "steps: <code>20, 50, 100</code>" in page and "dry run: <code>yes</code>" in page
    assert "None" not in page and "[20.0" not in page and "True" not in page


def test_models_validate_says_where_the_zoos_files_go_and_at_which_threshold_it_counted(cli, project_dir, yolo_dir):
    result = cli("models", "validate", "faces@v1", "objects@yolov4", "--format", "json")
    assert result.exit_code == 4
    assert "MLDEPLOY_YOLO_DIR" in result.stderr and "fix the path in" not in result.stderr  # the zoo's files, not mldeploy.toml's
    v1 = json.loads(result.stdout)["versions"][0]
    assert v1["threshold"] == 0.5 and v1["over_threshold"] <= v1["detections"]  # which count is which, said
