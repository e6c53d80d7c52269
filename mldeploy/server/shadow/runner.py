"""Shadow inference in a child process that only runs while the live side is idle.

A shadow version competes with the live one for the same cores. In the server's own process nothing
can stop that (OpenCV and TensorFlow run each call on their own shared thread pools): measured, a
shadow of the same network added about 50% to the live p50 on two cores. A child process at
``nice 19`` still added 39% (the two vCPUs share one physical core, so whatever the child runs slows
the live thread beside it). So the child is also *paused* (SIGSTOP) while any live forward pass runs
and resumed (SIGCONT) when none does: the shadow gets exactly the idle time, and when that is not
enough, the requests wait in the capture (the byte budget decides how long). A separate process also keeps a shadow
that crashes (a segfault in a native library) away from the live answers.

With ``--shadow-mode always`` the child is never paused: for machines with cores (or an accelerator)
to spare. The child is started with ``spawn`` (forking a process that already runs threads is unsafe);
each job carries the version's spec and the upload's encoded bytes, so the child loads exactly what the
parent would, once, and decodes the image itself.

Jobs and answers travel over one pipe, not ``multiprocessing`` queues: one job is in flight at a time, and
a pipe holds no named semaphores, which a server stopped by a signal would leave behind (``resource_tracker:
There appear to be 6 leaked semaphore objects``). The child ignores SIGINT: Ctrl-C on a terminal reaches
the whole process group, and the server, not the child, decides when the child stops.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from dataclasses import dataclass

from mldeploy.detections import Detections
from mldeploy.errors import InferenceError, MldeployError
from mldeploy.models.base import ModelSpec

log = logging.getLogger("mldeploy.server")

_STOP, _CONT = getattr(signal, "SIGSTOP", None), getattr(signal, "SIGCONT", None)  # POSIX only; elsewhere no pausing


@dataclass
class ShadowAnswer:
    detections: Detections | None
    seconds: float
    error: str | None


def _die_with(parent: int) -> None:  # pragma: no cover - runs in the child process
    """Be killed when the parent dies, even by kill -9, even while paused (SIGSTOP): Linux's parent-death signal."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the jobs queue's EOF ends the loop instead
        return
    if os.getppid() != parent:  # the parent died before the signal was set
        os._exit(0)


def _child(conn, parent: int) -> None:  # pragma: no cover - runs in the child process
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with(parent)
    os.nice(19)
    from mldeploy.images import decode_image
    from mldeploy.models import load_detector
    from mldeploy.pipeline import run_detector

    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if job is None:
            return
        spec, data, max_pixels = job
        try:
            image = decode_image(data, max_pixels)  # here, not in the server: decoding is shadow work too
            detections, seconds = run_detector(load_detector(spec), image)
            answer = ((detections.xyxy, detections.confidence, detections.class_id, detections.label, detections.image_size), seconds, None)
        except MldeployError as exc:
            answer = (None, 0.0, str(exc))
        except Exception as exc:
            answer = (None, 0.0, f"{type(exc).__name__}: {exc}")
        try:
            conn.send(answer)
        except (EOFError, OSError):
            return


class ShadowRunner:
    """One child process; :meth:`run` sends it a job and waits for the answer (one job at a time)."""

    def __init__(self, timeout: float = 120.0) -> None:
        self.timeout = timeout
        self._context = multiprocessing.get_context("spawn")
        self._process = None
        self._conn = None
        self._busy = False  # a job is in the child
        self._paused = False
        self._signal_lock = threading.Lock()
        self.start()

    def start(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn, child = self._context.Pipe(duplex=True)
        self._process = self._context.Process(target=_child, args=(child, os.getpid()), name="mldeploy-shadow", daemon=True)
        self._process.start()
        child.close()  # the child's end lives in the child now

    def run(self, spec: ModelSpec, data: bytes, max_pixels: int | None = None) -> ShadowAnswer:
        """Run ``spec`` on the encoded image ``data`` in the child (which decodes it)."""
        if not self._process.is_alive():
            self.start()
        self._conn.send((spec, data, max_pixels))
        self._busy = True
        running = 0.0  # seconds the child was allowed to run: time paused does not count
        try:
            while True:
                try:
                    if self._conn.poll(0.25):
                        payload, seconds, error = self._conn.recv()
                        break
                except (EOFError, OSError):  # the child died mid-answer: wait for it to be gone, then restart below
                    self._process.join(1)
                if not self._process.is_alive():
                    code = self._process.exitcode
                    self.start()
                    raise InferenceError(f"shadow {spec.ref} crashed its process (exit {code}); a new one was started") from None
                running += 0 if self._paused else 0.25
                if running > self.timeout:
                    self._process.kill()
                    self._process.join()
                    self.start()
                    raise InferenceError(f"shadow {spec.ref} gave no answer in {self.timeout:g} s") from None
        finally:
            self._busy = False
        if error is not None:
            return ShadowAnswer(None, seconds, error)
        return ShadowAnswer(Detections(*payload), seconds, None)

    def pause(self) -> None:
        """Freeze the child while a live forward pass runs (only when it has work: one syscall)."""
        with self._signal_lock:
            if self._busy and not self._paused and _STOP is not None:
                self._paused = self._signal(_STOP)

    def resume(self) -> None:
        with self._signal_lock:
            if self._paused:
                self._signal(_CONT)
                self._paused = False

    def _signal(self, sig) -> bool:
        try:
            os.kill(self._process.pid, sig)
            return True
        except (ProcessLookupError, AttributeError):
            return False

    def stop(self) -> None:
        self.resume()
        if self._process is not None and self._process.is_alive():
            try:
                self._conn.send(None)
            except (EOFError, OSError):
                pass
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
