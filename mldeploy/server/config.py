"""Server settings: explicit keyword defaults, derived values as properties (uvicorn's Config style)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mldeploy.errors import UsageError
from mldeploy.models.registry import DEFAULT_MODEL
from mldeploy.project import Settings
from mldeploy.rollout.gates import resolve_rules

#: The gates a live canary guard can judge: what a LiveWindow of its requests measures.
LIVE_GATES = ("max_error_rate", "max_p95_ms")


#: When the live shadow runs: ``idle`` only while no prediction request is open (its process paused
#: otherwise), ``always`` at once, beside the live requests (for spare cores or an accelerator).
SHADOW_MODES = ("idle", "always")


@dataclass
class ServerConfig:
    """Everything ``create_app`` needs. ``models`` are model names; the first is ``/predict``'s."""

    models: list[str] = field(default_factory=lambda: [DEFAULT_MODEL, "people"])
    host: str = "127.0.0.1"
    port: int = 8000
    state_dir: Path | None = None
    config_path: Path | None = None
    max_upload_bytes: int = 20 * 1024 * 1024
    admin_token: str | None = field(default_factory=lambda: os.environ.get("MLDEPLOY_ADMIN_TOKEN") or None)
    shadow: dict[str, str] = field(default_factory=dict)  # model -> version, set at start-up
    canary: dict[str, tuple[str, float]] = field(default_factory=dict)  # model -> (version, weight %)
    serve_versions: dict[str, str] = field(default_factory=dict)  # model -> version this replica serves, outside the state (a rollout controller's pod)
    capture_dir: Path | None = None  # keep captured requests here (off by default: they are users' data)
    capture_rate: float = 1.0  # share of requests captured
    capture_max_bytes: int = 1024 * 1024 * 1024  # the capture's byte budget (oldest evicted first)
    shadow_mode: str = "idle"  # idle: the shadow runs only while no request is open; always: at once
    max_pixels: int = 25_000_000  # an upload's pixel limit (a 24 MP camera photo passes), checked before decoding
    request_timeout: float = 30.0  # seconds a model may take to answer one request
    header_timeout: float = 10.0  # seconds a client may take to send its request line and headers
    body_timeout: float = 30.0  # seconds a client may take to send its whole request body
    poll_seconds: float = 0.25
    canary_min_requests: int = 20
    canary_gates: dict[str, float | None] = field(default_factory=dict)  # the live canary guard's bounds, by GATES name
    settings: Settings | None = None  # mldeploy.toml as read by whoever made this config (None: the server reads config_path)

    def __post_init__(self) -> None:
        if not self.models:
            raise UsageError("serve at least one model, e.g. --model faces")
        if len(set(self.models)) != len(self.models):
            raise UsageError(f"a model is listed twice: {', '.join(self.models)}")
        if self.max_upload_bytes <= 0:
            raise UsageError("--max-upload-mb must be positive")
        for flag, value in (("--max-megapixels", self.max_pixels), ("--request-timeout", self.request_timeout),
                            ("--header-timeout", self.header_timeout), ("--body-timeout", self.body_timeout),
                            ("--capture-max-mb", self.capture_max_bytes)):
            if value <= 0:
                raise UsageError(f"{flag} must be positive")
        if not 0 <= self.capture_rate <= 1:
            raise UsageError(f"--capture-rate {self.capture_rate:g}: must be a share from 0 to 1 (0.1 captures one request in ten)")
        if self.shadow_mode not in SHADOW_MODES:
            raise UsageError(f"--shadow-mode {self.shadow_mode!r}: choose {' or '.join(SHADOW_MODES)}")
        unknown = set(self.canary_gates) - set(LIVE_GATES)
        if unknown:
            raise UsageError(f"the live canary guard judges {', '.join(LIVE_GATES)}, not {', '.join(sorted(unknown))}")
        self.canary_bounds  # noqa: B018 - checked now (a share from 0 to 1, not negative), as shadow's gates are

    @classmethod
    def from_settings(cls, settings: Settings, *, capture_dir: Path | None = None, capture_rate: float | None = None,
                      capture_max_mb: float | None = None, shadow_mode: str | None = None, **options) -> "ServerConfig":
        """A config from ``mldeploy.toml``'s settings with the flags given on top (None: not given, the
        file's value, else the default)."""
        c = settings.capture
        given = {
            "capture_dir": capture_dir if capture_dir is not None else c.dir,
            "capture_rate": capture_rate if capture_rate is not None else c.rate,
            "capture_max_bytes": None if (capture_max_mb if capture_max_mb is not None else c.max_mb) is None
            else int((capture_max_mb if capture_max_mb is not None else c.max_mb) * 1024 * 1024),
            "shadow_mode": shadow_mode or c.shadow_mode,
        }
        return cls(settings=settings, config_path=settings.path, **{k: v for k, v in given.items() if v is not None}, **options)

    @property
    def default_model(self) -> str:
        return self.models[0]

    @property
    def canary_bounds(self) -> dict[str, float]:
        """The live gates the canary guard applies, resolved by the same rules as a rehearsal's (no policy:
        only the bounds given)."""
        return resolve_rules(self.canary_gates, policy="none").bounds


def parse_assignments(values: list[str], flag: str, with_weight: bool = False) -> dict:
    """``["faces=v2"]`` -> ``{"faces": "v2"}``; with ``with_weight``, ``faces=v2:10`` -> ``{"faces": ("v2", 10.0)}``."""
    out: dict = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            example = "faces=v2:10" if with_weight else "faces=v2"
            raise UsageError(f"{flag} {value!r}: write MODEL=VERSION{':WEIGHT' if with_weight else ''}, e.g. {example}")
        if with_weight:
            version, sep, weight = rest.rpartition(":")
            try:
                share = float(weight)
            except ValueError:
                share = -1.0
            if not sep or not version or not 0 <= share <= 100:
                raise UsageError(f"{flag} {value!r}: the weight after ':' is a percentage from 0 to 100, e.g. faces=v2:10")
            out[name] = (version, share)
        else:
            out[name] = rest
    return out
