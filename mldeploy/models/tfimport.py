"""``import tensorflow`` without the C++ start-up lines that a log shows as noise.

TensorFlow's C++ core writes ``WARNING: All log messages before absl::InitializeLog() ...`` and a oneDNN
note straight to file descriptor 2 while it is imported, before ``TF_CPP_MIN_LOG_LEVEL`` applies. When
that variable is 3 (the command line's default; ``--debug`` leaves it unset) the import runs with
descriptor 2 sent to a temporary file, whose text is written back to stderr if the import fails.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading

_lock = threading.Lock()


def import_tensorflow():
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "3":
        import tensorflow

        return tensorflow
    with _lock, tempfile.TemporaryFile() as held:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return tensorflow
