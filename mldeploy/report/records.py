"""``--records DIR``: every image's row of a replay, written as it finishes, so no run has to hold them.

A replay's summary and reports keep counts and the most disagreeing images (see
:class:`~mldeploy.rollout.shadow.ShadowMetric`); the rows of all the images go here instead. The file
is ``records.jsonl`` (one JSON object a line: the same object as an entry of the JSON report's
``images``, plus ``index``, the image's number in the run) or ``records.parquet`` (flat columns, the
boxes as JSON text; pyarrow: the ``s3`` or ``ray`` extra). It is written under a ``.partial`` name and
renamed when the run ends, so a finished file is a finished run; a run that crashed leaves the
``.partial`` file with every row written so far. The folder carries the report marker: the next run
may replace it, and nothing else is ever written over.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mldeploy.errors import OutputError, UsageError
from mldeploy.fileio import REPORT_MARKER, check_folder_destination
from mldeploy.report.serialize import shadow_record_to_dict

FORMATS = ("jsonl", "parquet")
PARQUET_EXTRA = "pip install 'mldeploy[s3]' (pyarrow; the Ray extra brings it too)"
#: Rows buffered before a Parquet row group is written (a few MB at most).
ROW_GROUP = 2048


def require_format(fmt: str) -> None:
    """Refuse, before any work, a format this machine cannot write (exit 2)."""
    if fmt not in FORMATS:
        raise UsageError(f"--records-format {fmt!r}: choose {' or '.join(FORMATS)}")
    if fmt == "parquet":
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise UsageError(f"--records-format parquet needs pyarrow: {PARQUET_EXTRA}") from None


def flat_row(row: dict[str, Any]) -> dict[str, Any]:
    """A record's row with fixed, flat columns (Parquet's schema): nested parts as JSON text."""
    text = lambda value: None if value is None else json.dumps(value, separators=(",", ":"))  # noqa: E731
    out: dict[str, Any] = {"index": row["index"], "image": row["image"], "error": row.get("error"), "error_type": row.get("error_type")}
    for side in ("old", "new"):
        entry = row.get(side, {})
        out.update({f"{side}_model": entry.get("model"), f"{side}_count": entry.get("count"), f"{side}_ms": entry.get("inference_ms"),
                    f"{side}_error": entry.get("error"), f"{side}_detections": text(entry.get("detections"))})
    c = row.get("comparison")
    out.update({"agrees": None if c is None else c["agrees"], "new_failed": None if c is None else c["new_failed"]})
    for key in ("missing", "extra", "relabelled", "drifted"):
        out[key] = None if c is None else len(c[key])
    out.update({"mean_iou": None if c is None else c["mean_iou"], "comparison": text(c), "truth": text(row.get("truth")),
                "capture": text(row.get("capture"))})
    return out


def _schema():
    import pyarrow as pa

    columns = [("index", pa.int64()), ("image", pa.string()), ("error", pa.string()), ("error_type", pa.string())]
    for side in ("old", "new"):
        columns += [(f"{side}_model", pa.string()), (f"{side}_count", pa.int32()), (f"{side}_ms", pa.float64()), (f"{side}_error", pa.string()),
                    (f"{side}_detections", pa.string())]
    columns += [("agrees", pa.bool_()), ("new_failed", pa.bool_())] + [(k, pa.int32()) for k in ("missing", "extra", "relabelled", "drifted")]
    columns += [("mean_iou", pa.float64()), ("comparison", pa.string()), ("truth", pa.string()), ("capture", pa.string())]
    return pa.schema(columns)


class RecordsWriter:
    """One row per image into ``folder``; use as a context manager (``write(record)`` in between)."""

    def __init__(self, folder: Path, fmt: str = "jsonl", truths=None) -> None:
        require_format(fmt)
        self.folder, self.fmt, self.truths = Path(folder), fmt, truths
        check_folder_destination(self.folder, (), "--records")  # the inputs were checked before the run (check_destinations)
        self.path = self.folder / f"records.{fmt}"
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.rows = 0
        self._buffer: list[dict[str, Any]] = []
        self._fh = self._parquet = None

    def __enter__(self) -> "RecordsWriter":
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / REPORT_MARKER).write_text("written by mldeploy; this folder is replaced by the next run's records\n")
            for old in self.folder.glob("records.*"):  # an earlier run's rows (the marker says the folder is ours)
                old.unlink()
            if self.fmt == "jsonl":
                self._fh = open(self.partial, "w", encoding="utf-8")
            else:
                import pyarrow.parquet as pq

                self._parquet = pq.ParquetWriter(str(self.partial), _schema())
        except OSError as exc:
            raise OutputError(f"cannot write --records {self.folder}: {exc.strerror or exc}") from None
        return self

    def write(self, record) -> None:
        row = {"index": record.index, **shadow_record_to_dict(record, self.truths)}
        try:
            if self._fh is not None:
                self._fh.write(json.dumps(row, separators=(",", ":")) + "\n")
            else:
                self._buffer.append(flat_row(row))
                if len(self._buffer) >= ROW_GROUP:
                    self._flush()
        except OSError as exc:
            raise OutputError(f"cannot write {self.partial}: {exc.strerror or exc}") from None
        self.rows += 1

    def _flush(self) -> None:
        import pyarrow as pa

        if self._buffer:
            self._parquet.write_table(pa.Table.from_pylist(self._buffer, schema=_schema()))
            self._buffer.clear()

    def __exit__(self, kind, exc, tb) -> None:
        try:
            if self._fh is not None:
                self._fh.close()
            elif self._parquet is not None:
                self._flush()
                self._parquet.close()
            if kind is None:  # a finished run: its file under its final name
                os.replace(self.partial, self.path)
        except OSError as error:
            if kind is None:
                raise OutputError(f"cannot write {self.path}: {error.strerror or error}") from None


def read_records(folder: Path) -> list[dict[str, Any]]:
    """The rows a finished run wrote into ``folder`` (the tests' and a user's way back in)."""
    folder = Path(folder)
    if (folder / "records.jsonl").exists():
        with open(folder / "records.jsonl", encoding="utf-8") as fh:
            return [json.loads(line) for line in fh]
    import pyarrow.parquet as pq

    return pq.read_table(folder / "records.parquet").to_pylist()
