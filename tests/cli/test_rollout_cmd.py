"""promote / rollback / history through the CLI, with a real state file in the project folder."""

import hashlib
import json
import subprocess
import sys

from tests.helpers import subprocess_env


def live(cli):
    return json.loads(cli("history", "--format", "json").stdout)["live"]


def test_promote_rollback_history_and_detect_follows_the_live_version(cli, project_dir):
    assert cli("detect", "photos/astronaut.jpg", "-f", "json").exit_code == 0
    assert not (project_dir / ".mldeploy").exists()  # reading never creates state

    result = cli("promote", "faces", "v2", "--reason", "fewer false faces")
    assert result.exit_code == 0 and "v1 -> v2" in result.stderr
    assert (project_dir / ".mldeploy" / "state.db").is_file()
    doc = json.loads(cli("detect", "photos/chelsea.jpg", "-f", "json").stdout)
    assert doc["model"] == "faces@v2" and doc["results"][0]["count"] == 0  # v1's false face on the cat is gone
    assert cli("promote", "faces@v2").stderr.startswith("faces@v2 is already live")

    result = cli("rollback", "faces", "--reason", "too slow")
    assert result.exit_code == 0 and "v2 -> v1" in result.stderr
    assert json.loads(cli("detect", "photos/chelsea.jpg", "-f", "json").stdout)["model"] == "faces@v1"

    doc = json.loads(cli("history", "faces", "--format", "json").stdout)
    rows = [(h["from_version"], h["to_version"], h["action"], h["reason"]) for h in doc["history"]]
    assert rows == [("v1", "v2", "promote", "fewer false faces"), ("v2", "v1", "rollback", "too slow")]
    table = cli("history").stdout
    assert "fewer" in table and "live now: faces@v1" in table
    models = json.loads(cli("models", "--format", "json").stdout)["models"]
    assert [m["model"] for m in models if m["live"] and m["model"].startswith("faces@")] == ["faces@v1"]


def test_project_versions_can_be_promoted(cli, project_dir):
    assert cli("promote", "shapes", "shifted").exit_code == 0
    doc = json.loads(cli("detect", "shapes/square0.png", "-m", "shapes", "-f", "json").stdout)
    assert doc["model"] == "shapes@shifted" and doc["results"][0]["count"] > 0


def test_state_dir_flag_and_environment(cli, project_dir, monkeypatch):
    assert cli("promote", "faces", "v2", "--state-dir", "elsewhere").exit_code == 0
    assert (project_dir / "elsewhere" / "state.db").is_file() and not (project_dir / ".mldeploy").exists()
    monkeypatch.setenv("MLDEPLOY_STATE_DIR", str(project_dir / "elsewhere"))
    assert live(cli) == {"faces": "v2"}


def test_refusals_and_their_exit_codes(cli, project_dir, yolo_dir):
    cases = [
        (("promote", "faces", "v7"), 2, "no version 'v7'"),
        (("promote", "nope", "v1"), 2, "unknown model 'nope'"),
        (("promote", "faces"), 2, "which version"),
        (("rollback", "faces"), 2, "no earlier live version"),
        (("promote", "objects", "yolov4"), 4, "missing yolov4.cfg, yolov4.weights"),
    ]
    for args, code, message in cases:
        result = cli(*args)
        assert result.exit_code == code, (args, result.output)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (project_dir / ".mldeploy").exists()  # nothing was written
    assert cli("promote", "objects", "yolov4", "--force").exit_code == 0  # a user who knows better


def test_a_damaged_state_file_is_a_one_line_error_and_stays_as_it_was(cli, project_dir):
    state = project_dir / ".mldeploy"
    state.mkdir()
    (state / "state.db").write_bytes(b"definitely not sqlite" * 50)
    digest = hashlib.sha256((state / "state.db").read_bytes()).hexdigest()
    for args in (("promote", "faces", "v2"), ("history",), ("detect", "photos/camera.jpg")):
        result = cli(*args)
        assert result.exit_code == 5, (args, result.output)
        assert "not a readable mldeploy state database" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert hashlib.sha256((state / "state.db").read_bytes()).hexdigest() == digest


def test_concurrent_promotions_from_real_processes(project_dir):
    """Eight `mldeploy promote` processes at once: every one lands, and the history is one chain."""
    env = subprocess_env()
    versions = ["v2", "v1"] * 4
    procs = [subprocess.Popen([sys.executable, "-m", "mldeploy", "promote", "faces", v, "--reason", f"p{n}", "--force"],
                              cwd=project_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n, v in enumerate(versions)]
    outcomes = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, outcomes
    from mldeploy.store import open_store

    rows = open_store(project_dir / ".mldeploy").history("faces")
    changed = [err for _, err in outcomes if "promoted" in err]
    assert len(rows) == len(changed) >= 1  # no-ops ("already live") write nothing; every change has its row
    assert rows[0].from_version == "v1"
    assert all(r.command.startswith("mldeploy promote faces v") and r.command.endswith("--force") for r in rows)
    for before, after in zip(rows, rows[1:]):
        assert after.from_version == before.to_version != after.to_version


def test_a_live_version_removed_from_the_project_file_fails_loudly(cli, project_dir):
    assert cli("promote", "faces", "blind").exit_code == 0
    toml = project_dir / "mldeploy.toml"
    toml.write_text(toml.read_text().replace("[models.faces.blind]", "[models.faces.blind-old]"))
    result = cli("detect", "photos/camera.jpg")
    assert result.exit_code == 2 and "faces@blind is live but no longer defined" in result.stderr
    assert cli("detect", "photos/camera.jpg", "-m", "faces@v1").exit_code == 0  # naming a version still works
    assert cli("promote", "faces", "v1").exit_code == 0
    assert cli("detect", "photos/camera.jpg").exit_code == 0


def test_route_command(cli, project_dir):
    assert cli("route").stderr.startswith("no shadow or canary is set")
    for args, message in ((("route", "faces"), "nothing to change"), (("route", "faces", "--canary", "v2"), "needs --weight"),
                          (("route", "faces", "--shadow", "v1"), "is the live version"), (("route", "faces", "--shadow", "v9"), "no version 'v9'"),
                          (("route", "faces", "--shadow", "v2", "--no-shadow"), "not both")):
        result = cli(*args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.output)
    assert cli("route", "faces", "--shadow", "v2").exit_code == 0
    assert cli("route", "faces", "--canary", "blind", "--weight", "10").exit_code == 0
    assert "faces: live v1, shadow v2, canary blind at 10%" in cli("route").stdout
    assert cli("route", "faces", "--no-shadow", "--no-canary").exit_code == 0
    assert cli("route").stderr.startswith("no shadow or canary is set")
