"""mldeploy: local object detection and deployment rehearsal.

The package root stays import-light on purpose: ``mldeploy --help`` must not pay for
NumPy, OpenCV or TensorFlow. Import the pieces you need from their modules, e.g.
``from mldeploy.detections import Detections`` or ``from mldeploy.models import load_detector``.
"""

__version__ = "0.1.0"
