"""Shadow inference in a child process at the lowest CPU priority.

A shadow version competes with the live one for the same cores. In the server's own process nothing
can stop that (OpenCV and TensorFlow run each call on their own shared thread pools), and it was
measured: a shadow of the same network added about 50% to the live p50 on two cores. In a child
process at ``nice 19`` the kernel gives the live process the CPU whenever it wants it; the shadow
uses what is left, and when it falls behind, the bounded queue in front of it drops jobs (counted).
It also keeps a shadow that crashes (a segfault in a native library) away from the live answers.

The child is started with ``spawn`` (forking a process that already runs threads is unsafe); each job
carries the version's spec and its backend's import path, so the child loads exactly what the parent
would, once, and keeps it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import time
from dataclasses import dataclass

import numpy as np

from mldeploy.detections import Detections
from mldeploy.errors import InferenceError, MldeployError
from mldeploy.models.base import ModelSpec

log = logging.getLogger("mldeploy.server")


@dataclass
class ShadowAnswer:
    detections: Detections | None
    seconds: float
    error: str | None


def _child(jobs, answers) -> None:  # pragma: no cover - runs in the child process
    os.nice(19)
    from mldeploy.models import load_detector, registry
    from mldeploy.pipeline import run_detector

    while True:
        job = jobs.get()
        if job is None:
            return
        spec, backend, image = job
        try:
            registry.BACKENDS.setdefault(spec.backend, backend)
            detections, seconds = run_detector(load_detector(spec), image)
            answers.put(((detections.xyxy, detections.confidence, detections.class_id, detections.label, detections.image_size), seconds, None))
        except MldeployError as exc:
            answers.put((None, 0.0, str(exc)))
        except Exception as exc:
            answers.put((None, 0.0, f"{type(exc).__name__}: {exc}"))


class ShadowRunner:
    """One child process; :meth:`run` sends it a job and waits for the answer (one job at a time)."""

    def __init__(self, timeout: float = 120.0) -> None:
        self.timeout = timeout
        self._context = multiprocessing.get_context("spawn")
        self._process = None
        self.start()

    def start(self) -> None:
        self._jobs = self._context.Queue()
        self._answers = self._context.Queue()
        self._process = self._context.Process(target=_child, args=(self._jobs, self._answers), name="mldeploy-shadow", daemon=True)
        self._process.start()

    def run(self, spec: ModelSpec, image: np.ndarray) -> ShadowAnswer:
        from mldeploy.models.registry import BACKENDS

        if not self._process.is_alive():
            self.start()
        self._jobs.put((spec, BACKENDS[spec.backend], image))
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                payload, seconds, error = self._answers.get(timeout=0.25)
                break
            except queue.Empty:
                if not self._process.is_alive():
                    code = self._process.exitcode
                    self.start()
                    raise InferenceError(f"shadow {spec.ref} crashed its process (exit {code}); a new one was started") from None
                if time.monotonic() > deadline:
                    self._process.kill()
                    self._process.join()
                    self.start()
                    raise InferenceError(f"shadow {spec.ref} gave no answer in {self.timeout:g} s") from None
        if error is not None:
            return ShadowAnswer(None, seconds, error)
        return ShadowAnswer(Detections(*payload), seconds, None)

    def stop(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._jobs.put(None)
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
