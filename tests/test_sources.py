"""Images in object storage, against a real S3 server (moto's, on 127.0.0.1): a prefix replays like the
same folder on disk, a manifest lists URIs, and every bad case is one named line."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import PHOTOS, subprocess_env

pytest.importorskip("pyarrow.fs", reason="object storage needs pyarrow: pip install 'mldeploy[s3]'")
pytest.importorskip("moto.server", reason="the S3 tests need moto's server: pip install -e '.[test]'")

from tests.helpers.s3 import s3_server, upload  # noqa: E402


@pytest.fixture
def bucket(project_dir, monkeypatch):
    """Bucket ``golden``: the sample photos under ``sets/v1/`` beside a bad object, a non-image and a hidden
    one; the same files in the folder ``golden/`` of the project. Yields the AWS environment."""
    photos = project_dir / "photos"
    bad = (photos / "astronaut.jpg").read_bytes()[:2000]
    files = {f"sets/v1/{name}": photos / name for name in PHOTOS}
    files.update({"sets/v1/cut.jpg": bad, "sets/v1/notes.txt": b"not listed", "sets/v1/.hidden.jpg": b"not listed either"})
    local = project_dir / "golden"
    local.mkdir()
    for key, body in files.items():
        (local / key.split("/")[-1]).write_bytes(body.read_bytes() if hasattr(body, "read_bytes") else body)
    with s3_server() as env:
        upload(env, "golden", files)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield env


def summary_without_latency(report):
    s = dict(report["summary"])
    s.pop("latency")
    return s


def test_a_prefix_replays_like_the_same_folder_on_disk(cli, project_dir, bucket):
    args = ("--new", "faces-haar@default", "--gates", "none", "--format", "json")
    remote, local = cli("shadow", "s3://golden/sets/v1", *args), cli("shadow", "golden", *args)
    assert remote.exit_code == local.exit_code == 1, remote.output  # cut.jpg is truncated: a counted error
    r, l = json.loads(remote.stdout), json.loads(local.stdout)
    assert summary_without_latency(r) == summary_without_latency(l) and r["summary"]["unreadable"] == 1
    assert [i["image"] for i in r["images"]] == [f"s3://golden/sets/v1/{n}" for n in ("astronaut.jpg", "camera.jpg", "chelsea.jpg", "coffee.jpg",
                                                                                      "cut.jpg", "rocket.jpg")]
    assert "s3://golden/sets/v1/cut.jpg: truncated or corrupt image" in remote.stderr
    # the canary routes by each image's path under its prefix or folder: the same images, the same steps
    steps = ("--model", "faces", "--steps", "40,100", "--dry-run")
    timelines = [json.loads(cli("canary", where, *steps, *args).stdout)["timeline"] for where in ("s3://golden/sets/v1/", "golden")]
    assert [(s["canary_requests"], s["recall"]) for s in timelines[0]] == [(s["canary_requests"], s["recall"]) for s in timelines[1]]


def test_a_manifest_of_uris_detect_and_eval_read_objects(cli, project_dir, bucket):
    manifest = project_dir / "golden.txt"
    manifest.write_text("# two objects and one that is not there\ns3://golden/sets/v1/astronaut.jpg\n"
                        "s3://golden/sets/v1/camera.jpg\ns3://golden/sets/v1/gone.jpg\n")
    result = cli("detect", f"@{manifest}", "--format", "json", "--save", "annotated")
    assert result.exit_code == 1, result.output  # gone.jpg: one named error, the rest detected
    results = json.loads(result.stdout)["results"]
    assert [r.get("count") for r in results] == [1, 1, None] and results[2]["error"] == "no such object"
    assert (project_dir / "annotated" / "golden" / "sets" / "v1" / "astronaut.jpg").stat().st_size > 1000  # under the bucket's name
    scored = cli("eval", "s3://golden/sets/v1", "--labels", "photos/labels/faces.json", "--format", "json")
    assert json.loads(scored.stdout)["summary"]["tp"] == 2  # paired with the labels by object name


def test_bad_storage_is_one_line_and_exit_2(cli, project_dir, bucket):
    missing = cli("shadow", "s3://no-such-bucket/x", "--new", "v1")
    assert missing.exit_code == 2 and "s3://no-such-bucket/x: no such bucket" in missing.stderr
    empty = cli("shadow", "s3://golden/nothing-here", "--new", "v1")
    assert empty.exit_code == 2 and "no image objects under this prefix" in empty.stderr


def test_without_pyarrow_a_uri_names_the_extra(project_dir, tmp_path):
    blocker = tmp_path / "blocked"
    (blocker / "pyarrow").mkdir(parents=True)
    (blocker / "pyarrow" / "__init__.py").write_text("raise ImportError('No module named pyarrow (blocked by the test)')\n")
    env = subprocess_env(PYTHONPATH=f"{blocker}{os.pathsep}{subprocess_env()['PYTHONPATH']}")
    result = subprocess.run([sys.executable, "-m", "mldeploy", "shadow", "s3://golden/sets/v1", "--new", "v1"], cwd=project_dir, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "pip install 'mldeploy[s3]'" in result.stderr, result.stderr
    parquet = subprocess.run([sys.executable, "-m", "mldeploy", "shadow", "photos", "--new", "v1", "--records", "rows", "--records-format", "parquet"],
                             cwd=project_dir, env=env, capture_output=True, text=True, timeout=120)
    assert parquet.returncode == 2 and "needs pyarrow" in parquet.stderr and not (project_dir / "rows").exists(), parquet.stderr
