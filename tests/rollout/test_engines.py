"""The engine seam: engines by name, their options checked, and the local engine's detect and replay."""

import pytest

from mldeploy.errors import UsageError
from mldeploy.rollout.engines import ENGINES, get_engine
from mldeploy.rollout.spec import EngineChoice


def test_engines_are_chosen_by_name_and_their_options_checked():
    assert set(ENGINES) >= {"local", "ray"}
    assert get_engine("local", None, 2).workers == 2
    with pytest.raises(UsageError, match="choose local or ray"):
        EngineChoice("spark").make(None)
    with pytest.raises(UsageError, match="--address, --actors needs --engine ray"):
        EngineChoice("local", address="auto", actors=2).make(None)


def test_a_recorded_side_is_answered_where_the_records_are_and_never_timed(project_dir):
    """Pair.complete fills in a side that does not run; Pair.answer runs only the timed ones."""
    from mldeploy.detections import Detections
    from mldeploy.models import load_detector
    from mldeploy.models.base import ModelSpec
    from mldeploy.pipeline import ImageInput, read_input
    from mldeploy.project import Project
    from mldeploy.rollout.pairs import Pair
    from mldeploy.rollout.sides import as_side

    class Recorded:
        timed = False
        spec = ModelSpec("shapes", "live", "recorded", ())

        def answer(self, image, item, labels=None, conf=None):
            from mldeploy.pipeline import DetectionResult

            assert image is None  # answered without the image
            return DetectionResult(item.display, self.spec.ref, Detections.empty((320, 320)), seconds=0.5)

    new = as_side(load_detector(Project().registry().resolve("shapes@v1")))
    item = ImageInput(project_dir / "shapes" / "square0.png", "square0.png", project_dir / "shapes", "square0.png")
    pair = Pair(Recorded(), new)
    answers = pair.answer(0, read_input(item), item)
    assert set(answers) == {"new"} and pair.recorded
    record = pair.complete(0, item, answers)
    assert record.old.seconds == 0.5 and record.comparison is not None and len(record.comparison.extra) == len(record.new.detections)
