"""Hardening: what an attacker and an unlucky user found, each case reproduced first (issue 11).
Inputs: decoders, folders, mldeploy.toml, the state store, report destinations."""

import io
import json
import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mldeploy.errors import ConfigError, InvalidImageError, NotAnImageError
from mldeploy.images import decode_image, read_image
from tests.helpers import as_unprivileged, subprocess_env


def encoded(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), np.uint8)).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_the_supported_formats_decode(fmt):
    assert decode_image(encoded(fmt)).shape == (40, 60, 3)


@pytest.mark.parametrize("fmt", ["EPS", "ICO", "TGA", "PCX", "SGI", "DDS", "JPEG2000", "IM", "QOI", "PPM"])
def test_other_formats_never_reach_a_decoder(fmt):
    """Pillow's EPS plugin runs Ghostscript on the bytes; ICO, TGA and the rest were all decoded before."""
    try:
        data = encoded(fmt)
    except (OSError, KeyError, ValueError):
        pytest.skip(f"this Pillow cannot write {fmt}")
    with pytest.raises(NotAnImageError, match="not an image mldeploy reads .*JPEG, PNG, WebP, BMP, TIFF or GIF"):
        decode_image(data)


def test_a_fifo_named_like_a_photo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    with pytest.raises(InvalidImageError, match="not a regular file"):
        read_image(fifo)


def mldeploy(cwd, *args, unprivileged=False):
    command = [sys.executable, "-m", "mldeploy", *args]
    if unprivileged:
        command = as_unprivileged(command)
        if command is None:
            pytest.skip("no setpriv: cannot run without root's permission override")
    return subprocess.run(command, cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=300)


def test_a_symlink_loop_in_a_folder_is_one_named_failure(project_dir):
    photos = project_dir / "photos"
    os.symlink(photos / "loop.jpg", photos / "loop.jpg")  # points at itself
    result = mldeploy(project_dir, "detect", "photos", "--format", "json")
    assert result.returncode == 1, result.stderr
    assert "loop.jpg: a symlink loop" in result.stderr and "unexpected" not in result.stderr
    assert sum(1 for r in json.loads(result.stdout)["results"] if "error" not in r) == 5  # the rest was processed


def test_an_unreadable_sub_folder_is_named_and_the_rest_processed(project_dir):
    secret = project_dir / "photos" / "secret"
    secret.mkdir()
    shutil.copy(project_dir / "photos" / "camera.jpg", secret / "c.jpg")
    secret.chmod(0)
    try:
        result = mldeploy(project_dir, "detect", "photos", "--format", "json", unprivileged=True)
    finally:
        secret.chmod(stat.S_IRWXU)
    assert result.returncode == 1, result.stderr
    assert "secret: cannot read this folder: Permission denied" in result.stderr


@pytest.mark.parametrize(
    "toml, message",
    [
        ('[models.cats.lots]\nfrom = "cats@haar"\noptions = { min_neighbors = "lots" }\n', "options.min_neighbors = 'lots': expected int"),
        ('[models.faces.neg]\nfrom = "faces@v1"\ninput_size = -5\n', "input_size = -5: must be from 16 to 4096"),
        ('[models.faces.big]\nfrom = "faces@v1"\noptions = { input_size = 300, bogus = 1 }\n', "'options.bogus' is not an option"),
        ('[models."[red]evil".v1]\nfrom = "faces@v1"\n', "model name '[red]evil' must be letters, digits"),
        ("[gates]\nx = " + "[" * 50_000 + "]" * 50_000 + "\n", "nest too deeply"),
        ('[models.red.v1]\nbackend = "darknet"\ncfg = "c.cfg"\nweights = "w.weights"\nnames = "/dev/zero"\n', "/dev/zero: not a regular file"),
    ],
)
def test_project_file_mistakes_are_exit_2_naming_file_table_and_key(project_dir, toml, message):
    (project_dir / "mldeploy.toml").write_text(toml)
    result = mldeploy(project_dir, "models")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "mldeploy.toml" in lines[0]


def test_a_fifo_as_a_names_file_does_not_hang(project_dir):
    os.mkfifo(project_dir / "names.fifo")
    (project_dir / "mldeploy.toml").write_text('[models.red.v1]\nbackend = "darknet"\ncfg = "c.cfg"\nweights = "w"\nnames = "names.fifo"\n')
    from mldeploy.project import Project

    with pytest.raises(ConfigError, match="names file .*names.fifo: not a regular file"):
        Project().registry()


def test_labels_are_shown_as_text_never_as_markup(project_dir):
    (project_dir / "mldeploy.toml").write_text('[models.cats.marked]\nfrom = "cats@haar"\n[models.signs.v1]\nbackend = "haar"\n'
                                               'cascade = "c.xml"\nclasses = ["[red]evil[/red]"]\n')
    result = mldeploy(project_dir, "models")
    assert result.returncode == 0 and "[red]evil[/red]" in result.stdout


def test_a_read_only_state_folder_can_be_read_and_says_why_it_cannot_be_written(project_dir):
    assert mldeploy(project_dir, "promote", "faces", "blind").returncode == 0  # WAL mode: reading needs -shm
    state = project_dir / ".mldeploy"
    for path in [state, *state.iterdir()]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        detect = mldeploy(project_dir, "detect", "photos/astronaut.jpg", "--format", "json", unprivileged=True)
        history = mldeploy(project_dir, "history", "--format", "json", unprivileged=True)
        promote = mldeploy(project_dir, "promote", "faces", "v1", unprivileged=True)
    finally:
        state.chmod(0o755)
    assert detect.returncode == 0 and '"model": "faces@blind"' in detect.stdout, detect.stderr  # the live version, read
    assert history.returncode == 0 and '"to_version": "blind"' in history.stdout, history.stderr
    assert promote.returncode == 5 and len(promote.stderr.strip().splitlines()) == 1
    assert "is read-only here" in promote.stderr and "--state-dir" in promote.stderr


def test_a_read_only_report_file_in_a_writable_folder_is_still_replaced(tmp_path):
    """The report is replaced by a rename, which only its folder must allow: refusing it would be wrong."""
    from mldeploy.fileio import atomic_write, check_file_destination

    report = tmp_path / "shadow.json"
    report.write_text("{}")
    report.chmod(0o444)
    check_file_destination(report)  # no error
    atomic_write(report, b'{"passed": true}')
    assert report.read_text() == '{"passed": true}'
