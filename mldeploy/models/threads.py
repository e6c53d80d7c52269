"""How many threads the model libraries use: one setting for OpenCV, TensorFlow and the BLAS/OpenMP
pools, applied before a model loads (TensorFlow reads its thread counts once, when it starts).

``mldeploy bench --threads`` measures each count; ``mldeploy serve --threads`` runs with the chosen one.
It is a process-wide setting: OpenCV and TensorFlow keep one thread pool per process, not per model.
"""

from __future__ import annotations

import os

ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


def limit_threads(threads: int) -> None:
    for name in ENV:
        os.environ[name] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    import cv2

    cv2.setNumThreads(threads)
