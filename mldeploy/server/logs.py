"""Logging for ``mldeploy serve``: mldeploy's own lines beside uvicorn's, on stderr, as text or JSON lines.

uvicorn configures only its own loggers, so "routing: faces@v2 is live" or a canary rollback used to
leave no trace. :func:`log_config` extends uvicorn's dictConfig with the ``mldeploy`` logger, at the same
``--log-level``; ``json`` turns every line (uvicorn's access log included) into one JSON object for a
log shipper.
"""

from __future__ import annotations

import copy
import json
import logging
from datetime import datetime, timezone
from typing import Any

FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message"}`` per line (and ``exception`` when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def log_config(level: str = "info", fmt: str = "text") -> dict[str, Any]:
    """uvicorn's logging dictConfig, with the ``mldeploy`` loggers added (and JSON lines if asked)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["mldeploy"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    if fmt == "json":
        for name in config["formatters"]:
            config["formatters"][name] = {"()": f"{__name__}.JsonFormatter"}
    return config
