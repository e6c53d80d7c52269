import numpy as np
import pytest

from mldeploy.detections import Detections
from mldeploy.errors import InferenceError, InputNotFoundError, InvalidImageError, NotAnImageError, OutputError
from mldeploy.models import ModelSpec
from mldeploy.models.base import Detector
from mldeploy.pipeline import AnnotatedImageWriter, RunSummary, collect_inputs
from mldeploy.rollout.engines.local import detect_images


@pytest.fixture
def tree(tmp_path, samples):
    root = tmp_path / "imgs"
    (root / "a" / "b").mkdir(parents=True)
    (root / ".hidden").mkdir()
    (root / "astronaut.jpg").write_bytes((samples / "astronaut.jpg").read_bytes())
    (root / "a" / "b" / "camera.JPG").write_bytes((samples / "camera.jpg").read_bytes())
    (root / "a" / "notes.txt").write_text("not an image, and not named like one")
    (root / ".hidden" / "x.jpg").write_bytes((samples / "coffee.jpg").read_bytes())
    (root / "a" / "fake.png").write_text("text pretending to be a png")
    return root


def names(images):
    return [p.path.name for p in images]


def test_folders_are_searched_recursively_for_image_files(tree):
    images, failures = collect_inputs([str(tree)])
    assert names(images) == ["astronaut.jpg", "fake.png", "camera.JPG"]
    assert failures == []


def test_globs_files_and_duplicates(tree, monkeypatch):
    monkeypatch.chdir(tree)
    images, failures = collect_inputs(["**/*.JPG", "astronaut.jpg", "./astronaut.jpg", "a/notes.txt"])
    assert names(images) == ["camera.JPG", "astronaut.jpg", "notes.txt"]  # an explicit file is always tried
    assert failures == []


def test_arguments_that_match_nothing_are_failures_not_crashes(tmp_path):
    (tmp_path / "empty").mkdir()
    images, failures = collect_inputs([str(tmp_path / "missing.jpg"), str(tmp_path / "empty"), str(tmp_path / "*.png")])
    assert images == []
    assert [type(error) for _, error in failures] == [InputNotFoundError] * 3
    assert [str(error) for _, error in failures] == ["no such file or folder", "folder holds no image files", "no files match this pattern"]
    assert [arg for arg, _ in failures] == [str(tmp_path / "missing.jpg"), str(tmp_path / "empty"), str(tmp_path / "*.png")]


def test_output_folder_inside_the_input_is_not_read_back(tree):
    out = tree / "annotated"
    out.mkdir()
    (out / "astronaut.jpg").write_bytes((tree / "astronaut.jpg").read_bytes())
    images, _ = collect_inputs([str(tree)], exclude=out)
    assert "annotated" not in {p.path.parent.name for p in images}


class Scripted(Detector):
    """A stand-in model that fails on tall images and finds one box otherwise."""

    def _predict(self, image, conf):
        h, w = image.shape[:2]
        if h > w:
            raise RuntimeError("boom")
        return Detections.from_boxes([[1, 1, 5, 5]], [0.9], [0], self.classes, (w, h))


def test_mixed_folder_keeps_order_and_goes_on_after_failures(tree, tmp_path, samples):
    tall = tree / "tall.png"
    from PIL import Image

    Image.new("RGB", (10, 30)).save(tall)
    (tree / "cut.jpg").write_bytes((samples / "rocket.jpg").read_bytes()[:3000])
    images, _ = collect_inputs([str(tree)])
    detector = Scripted(ModelSpec("fake", "v0", "none", ("thing",)))
    results = list(detect_images(images, detector))
    assert [r.source for r in results] == [str(i.path) for i in images]
    by_name = {r.source.rsplit("/", 1)[-1]: r for r in results}
    assert isinstance(by_name["cut.jpg"].error, InvalidImageError)
    assert isinstance(by_name["fake.png"].error, NotAnImageError)
    assert isinstance(by_name["tall.png"].error, InferenceError) and "boom" in str(by_name["tall.png"].error)
    assert by_name["astronaut.jpg"].ok and len(by_name["astronaut.jpg"].detections) == 1
    summary = RunSummary("fake@v0")
    for r in results:
        summary.update(r)
    assert (summary.images, summary.failed, summary.detections) == (len(images), 3, 2)


def test_annotated_copies_mirror_the_tree_and_never_overwrite_inputs(tree, tmp_path):
    images, _ = collect_inputs([str(tree)])
    images = [i for i in images if i.path.name != "fake.png"]
    detector = Scripted(ModelSpec("fake", "v0", "none", ("thing",)))
    out = tmp_path / "out"
    results = list(detect_images(images, detector, writer=AnnotatedImageWriter(out, images)))
    assert all(r.ok for r in results)
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["a/b/camera.JPG", "astronaut.jpg"]
    before = (tree / "astronaut.jpg").read_bytes()
    again = list(detect_images(images, detector, writer=AnnotatedImageWriter(tree, images)))
    assert all(isinstance(r.error, OutputError) and "refusing to overwrite input" in str(r.error) for r in again)
    assert (tree / "astronaut.jpg").read_bytes() == before
    assert not list(tree.rglob(".mldeploy-*"))  # no temporary files left behind


def test_writer_mirrors_several_roots_without_collisions(tmp_path, samples):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.jpg").write_bytes((samples / "coffee.jpg").read_bytes())
    images, _ = collect_inputs([str(tmp_path / "x"), str(tmp_path / "y")])
    writer = AnnotatedImageWriter(tmp_path / "out", images)
    assert [writer.target(i) for i in images] == [tmp_path / "out" / "x" / "same.jpg", tmp_path / "out" / "y" / "same.jpg"]


def test_formats_opencv_cannot_write_get_a_png_suffix(tmp_path, samples):
    from PIL import Image

    Image.open(samples / "chelsea.jpg").save(tmp_path / "cat.gif")
    images, _ = collect_inputs([str(tmp_path / "cat.gif")])
    writer = AnnotatedImageWriter(tmp_path / "out", images)
    image = np.zeros((4, 4, 3), np.uint8)
    saved = writer.save(images[0], image, Detections.empty((4, 4)))
    assert saved == tmp_path / "out" / "cat.gif.png" and saved.read_bytes()[:4] == b"\x89PNG"


def test_unwritable_save_folder_is_a_per_image_error(tmp_path, samples):
    images, _ = collect_inputs([str(samples / "coffee.jpg")])
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output folder should be")
    detector = Scripted(ModelSpec("fake", "v0", "none", ("thing",)))
    (result,) = detect_images(images, detector, writer=AnnotatedImageWriter(blocker / "sub", images))
    assert isinstance(result.error, OutputError) and "cannot write" in str(result.error)
    assert blocker.read_text().startswith("a file")


def test_reduced_decoding_gives_the_full_images_boxes(samples, tmp_path):
    """A 3072 px JPEG is decoded at 1/4 for the SSD (it needs 600 px); the boxes come back in the full
    image's pixels and agree with a full decode; with --save, the annotated copy uses the full image."""
    from PIL import Image

    from mldeploy.compare import match
    from mldeploy.models import default_registry, load_detector
    from mldeploy.pipeline import AnnotatedImageWriter, collect_inputs

    with Image.open(samples / "astronaut.jpg") as img:
        img.resize((3072, 3072)).save(tmp_path / "big.jpg", quality=92)
    detector = load_detector(default_registry().resolve("faces@v1"))
    images, _ = collect_inputs([str(tmp_path / "big.jpg")])
    (reduced,) = detect_images(images, detector)
    (full,) = detect_images(images, detector, reduced_decode=False)
    assert reduced.detections.image_size == full.detections.image_size == (3072, 3072)
    comparison = match(full.detections, reduced.detections)
    assert comparison.agrees and len(comparison.matched) == 1 and comparison.mean_iou > 0.98
    (saved,) = detect_images(images, detector, writer=AnnotatedImageWriter(tmp_path / "out", images))
    assert saved.detections == full.detections  # a run that saves decodes in full
    with Image.open(saved.saved_to) as annotated:
        assert annotated.size == (3072, 3072)


def test_a_manifest_lists_images_relative_to_itself(tmp_path, samples):
    import os

    from mldeploy.pipeline import collect_inputs

    folder = tmp_path / "set"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "one.jpg").write_bytes((samples / "astronaut.jpg").read_bytes())
    absolute = tmp_path / "two.jpg"
    absolute.write_bytes((samples / "camera.jpg").read_bytes())
    manifest = folder / "list.txt"
    manifest.write_text(f"a/one.jpg\n# the golden set\n\n{absolute}  # absolute\na/missing.jpg\ns3://bucket/key.jpg\na/one.jpg\n")
    images, failures = collect_inputs([f"@{manifest}"])
    assert [i.display for i in images] == [str(folder / "a" / "one.jpg"), str(absolute), "s3://bucket/key.jpg"]  # listed twice, replayed once
    assert images[2].uri == "s3://bucket/key.jpg" and images[2].key == "key.jpg"  # an object is looked up when it is read
    assert [(arg, str(err)) for arg, err in failures] == [(f"@{manifest}:5", "a/missing.jpg: no such file")]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    images, failures = collect_inputs([f"@{fifo}", f"@{tmp_path / 'none.txt'}"])
    assert not images and [str(err) for _, err in failures] == [f"manifest {fifo}: not a regular file (a device, pipe or socket)", f"manifest {tmp_path / 'none.txt'}: no such file"]


def test_the_image_list_is_compact_and_keeps_each_image_s_name_in_its_set(tmp_path):
    """Each image's key (what the canary routes by and labels pair by) is its path under the argument
    it came from, however that argument was written; the same file named twice, or through a link, is
    listed once."""
    import os

    from mldeploy.pipeline import ImageList

    photos = tmp_path / "set" / "photos"
    (photos / "a").mkdir(parents=True)
    for name in ("a/one.jpg", "two.png"):
        (photos / name).write_bytes(b"x")
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"x")
    os.symlink(photos / "two.png", photos / "link-to-two.png")
    os.link(photos / "a" / "one.jpg", photos / "hard-one.jpg")
    manifest = tmp_path / "set" / "golden.txt"
    manifest.write_text("photos/a/one.jpg\n../outside.jpg\n")
    os.chdir(tmp_path / "set")
    images, failures = collect_inputs(["photos", "./photos/two.png", "photos/*.png", f"@{manifest}", "../outside.jpg"])
    assert failures == [] and isinstance(images, ImageList)
    # a folder's files before its sub-folders; the first name of a file is the one kept
    assert [(i.display, i.key) for i in images] == [("photos/hard-one.jpg", "hard-one.jpg"), ("photos/link-to-two.png", "link-to-two.png"),
                                                    (str(manifest.parent / ".." / "outside.jpg"), "outside.jpg")]
    assert images[0:2] == [images[0], images[1]] and images == list(images) and images[-1] == images[2]
    assert images[2].relative is None and images[2].key == "outside.jpg"  # not under the manifest's folder: its file name
    (nested,), _ = collect_inputs(["photos/a"])
    assert (nested.display, nested.key) == ("photos/a/one.jpg", "one.jpg")
    big = ImageList()
    for n in range(10_000):
        big.append(f"photos/day-{n // 100:03d}/image-{n:06d}.jpg", photos, f"day-{n // 100:03d}/image-{n:06d}.jpg")
    assert big[9_999].key == "day-099/image-009999.jpg" and len(big._text) + 8 * len(big) < 60 * len(big)
