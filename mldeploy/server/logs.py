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


#: A LogRecord's own attributes: anything else on a record came from ``extra=`` and is a field of its line.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "color_message"}
#: uvicorn's access line ``%s - "%s %s HTTP/%s" %d`` as fields.
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message"}`` per line, plus the fields a line was logged with
    (``extra=``: routes, the model, the URL), uvicorn's access line as ``client``, ``method``, ``path``,
    ``status``, and ``exception`` when there is one. Values are JSON, never Python reprs."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == len(_ACCESS_FIELDS):
            doc.update(zip(_ACCESS_FIELDS, record.args))
        doc.update({key: value for key, value in vars(record).items() if key not in _STANDARD and not key.startswith("_")})
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def log_config(level: str = "info", fmt: str = "text") -> dict[str, Any]:
    """uvicorn's logging dictConfig, with the ``mldeploy`` loggers added (and JSON lines if asked)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["mldeploy"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    if fmt == "json":
        for name in config["formatters"]:
            config["formatters"][name] = {"()": f"{__name__}.JsonFormatter"}
    return config
