"""The inputs of a run and what a detector answers on them, by job: :mod:`~mldeploy.pipeline.inputs`
(listing and reading images), :mod:`~mldeploy.pipeline.results` (a detector's answer on one image, one
guarded forward pass, a run's totals) and :mod:`~mldeploy.pipeline.writer` (annotated copies). The loop
that runs a detector over many images is an engine's (:mod:`mldeploy.rollout.engines`)."""

from mldeploy.pipeline.inputs import ImageInput, ImageList, ImageSubset, collect_inputs, read_input, read_input_at_least
from mldeploy.pipeline.results import DetectionResult, RunSummary, run_detector
from mldeploy.pipeline.writer import AnnotatedImageWriter

__all__ = ["AnnotatedImageWriter", "DetectionResult", "ImageInput", "ImageList", "ImageSubset", "RunSummary", "collect_inputs", "read_input",
           "read_input_at_least", "run_detector"]
