"""``mldeploy serve``: the HTTP service on uvicorn (the command only builds the config and runs it)."""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from mldeploy.cli.options import DEFAULT_MODEL, ConfigOption, StateDirOption


def serve(
    model: Annotated[List[str], typer.Option("--model", "-m", metavar="NAME", help="Model to serve (repeat); the first answers /predict.")] = [DEFAULT_MODEL, "people"],
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="Port (0 picks a free one).")] = 8000,
    shadow: Annotated[List[str], typer.Option("--shadow", metavar="MODEL=VERSION", rich_help_panel="Capture and shadow", help="Start a shadow (faces=v2; repeatable). Saved in the state: it outlives this server, for every server on the state, until 'mldeploy route MODEL --no-shadow'.", show_default=False)] = [],
    canary: Annotated[List[str], typer.Option("--canary", metavar="MODEL=VERSION:WEIGHT", help="Start a canary (faces=v2:10, percent). Saved in the state, like --shadow, until 'mldeploy route MODEL --no-canary'.", show_default=False)] = [],
    serve_version: Annotated[List[str], typer.Option("--serve-version", metavar="MODEL=VERSION", show_default=False,
                                                     help="Answer MODEL with VERSION on this replica, whatever the state says is live, and write nothing "
                                                          "to the state: for the canary pods of Argo Rollouts or Flagger. While VERSION is not live, this "
                                                          "replica's requests count as its canary, which /admin/models/MODEL/analysis judges for the fleet.")] = [],
    canary_max_error_rate: Annotated[Optional[float], typer.Option("--canary-max-error-rate", min=0, max=1, help="Roll a canary back when its error rate goes above this.")] = None,
    canary_max_p95_ms: Annotated[Optional[float], typer.Option("--canary-max-p95-ms", min=0, help="Roll a canary back when its p95 latency goes above this.")] = None,
    canary_min_requests: Annotated[int, typer.Option("--canary-min-requests", min=1, help="Requests a canary gets before the guard judges it.")] = 20,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, max=256, show_default=False, help="Threads for the model libraries (OpenCV, TensorFlow), for the whole process; 'mldeploy bench --threads' measures each count \\[default: the libraries' own].")] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.001, help="Largest request body accepted (413 above).")] = 20.0,
    capture: Annotated[Optional[Path], typer.Option("--capture", metavar="DIR", show_default=False, rich_help_panel="Capture and shadow",
                                                    help="Keep requests (the upload's bytes, the live answer, version, time) in this private folder, "
                                                         "for 'mldeploy shadow --capture' \\[default: off, or \\[capture] dir].")] = None,
    capture_rate: Annotated[Optional[float], typer.Option("--capture-rate", min=0, max=1, show_default=False, rich_help_panel="Capture and shadow",
                                                          help="Share of requests captured \\[default: 1].")] = None,
    capture_max_mb: Annotated[Optional[float], typer.Option("--capture-max-mb", min=0.01, show_default=False, rich_help_panel="Capture and shadow",
                                                            help="The capture's byte budget; the oldest requests are evicted (and counted) "
                                                                 "to stay under it. A shadow without --capture uses a temporary one of this size \\[default: 1024].")] = None,
    shadow_mode: Annotated[Optional[str], typer.Option("--shadow-mode", metavar="idle|always", show_default=False, rich_help_panel="Capture and shadow",
                                                       help="idle: the shadow runs only while no request is open (no cost to live latency); "
                                                            "always: at once, for spare cores or an accelerator \\[default: idle].")] = None,
    max_megapixels: Annotated[float, typer.Option("--max-megapixels", min=0.001, help="Largest image accepted, in megapixels (422 above; checked before decoding).")] = 25,
    request_timeout: Annotated[float, typer.Option("--request-timeout", min=0.1, help="Seconds a model may take on one request (503 after).")] = 30,
    header_timeout: Annotated[float, typer.Option("--header-timeout", min=0.1, help="Seconds a client may take to send its request headers (connection closed after).")] = 10,
    body_timeout: Annotated[float, typer.Option("--body-timeout", min=0.1, help="Seconds a client may take to send its request body (408 after).")] = 30,
    log_level: Annotated[str, typer.Option("--log-level", metavar="debug|info|warning|error", help="Log level of mldeploy's lines and uvicorn's.")] = "info",
    log_format: Annotated[str, typer.Option("--log-format", metavar="text|json", help="text for people, json for a log shipper (one object a line).")] = "text",
    state_dir: StateDirOption = None,
    config: ConfigOption = None,
) -> None:
    """Serve models over HTTP with live shadow, canary and blue-green routing.

    Endpoints: POST /predict, /models/NAME/predict, /count-NAME/; GET /models, /models/NAME/shadow,
    /healthz, /readyz, /metrics, / (a page); admin endpoints under /admin need MLDEPLOY_ADMIN_TOKEN.
    Routing changes made with 'mldeploy promote', 'rollback' or 'route' reach a running server within a
    second. --shadow and --canary are written into the state at start-up, as 'mldeploy route' would: they
    stay after the server stops (start-up says so), and 'mldeploy route MODEL --no-shadow' ends them.
    The port and the state are checked before any model loads.

    Examples:
        mldeploy serve
        mldeploy serve -m faces --shadow faces=v2 --capture ./capture
        mldeploy serve --port 0 --log-format json
        mldeploy serve -m faces --serve-version faces=v2 --state postgresql://mldeploy@db/mldeploy

    Exit codes:
        2    usage error: a bad flag, an unknown model, a port in use, a capture folder that cannot be used
        4    a model cannot be loaded
        5    the state store cannot be read (or, with --shadow or --canary, written)
        130  stopped with Ctrl-C, after the requests in flight (SIGTERM: the same, then ends on it: 143)
    """
    import math

    import uvicorn

    from mldeploy.errors import UsageError
    from mldeploy.server.app import create_app
    from mldeploy.project import Project
    from mldeploy.server.config import ServerConfig, parse_assignments

    for flag, value in (("--max-upload-mb", max_upload_mb), ("--capture-max-mb", capture_max_mb), ("--max-megapixels", max_megapixels),
                        ("--request-timeout", request_timeout), ("--header-timeout", header_timeout), ("--body-timeout", body_timeout)):
        if value is not None and not math.isfinite(value):
            raise UsageError(f"{flag} {value}: give a finite number")
    project = Project(state_dir=state_dir, config_path=config)
    cfg = ServerConfig.from_settings(
        project.settings, capture_dir=capture, capture_rate=capture_rate, capture_max_mb=capture_max_mb, shadow_mode=shadow_mode,
        models=list(model), host=host, port=port, state_dir=state_dir, max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        shadow=parse_assignments(shadow, "--shadow"), canary=parse_assignments(canary, "--canary", with_weight=True),
        serve_versions=parse_assignments(serve_version, "--serve-version"),
        canary_min_requests=canary_min_requests, canary_gates={"max_error_rate": canary_max_error_rate, "max_p95_ms": canary_max_p95_ms},
        max_pixels=int(max_megapixels * 1_000_000), request_timeout=request_timeout, header_timeout=header_timeout, body_timeout=body_timeout,
    )
    # Fail before binding the port on what can be checked without loading models.
    registry = project.registry()
    for name in cfg.models:
        registry.resolve(name)
    for flag, routes in (("--shadow", {k: v for k, v in cfg.shadow.items()}), ("--canary", {k: v for k, (v, _) in cfg.canary.items()})):
        for name, version in routes.items():
            if name not in cfg.models:
                raise UsageError(f"{flag} {name}={version}: {name} is not served (add --model {name})")
            registry.resolve(f"{name}@{version}")
            if version == registry.default_version(name):
                raise UsageError(f"{flag} {name}={version}: {name}@{version} is the live version; a {flag[2:]} must be another version")
    for name, version in cfg.serve_versions.items():
        if name not in cfg.models:
            raise UsageError(f"--serve-version {name}={version}: {name} is not served (add --model {name})")
        registry.resolve(f"{name}@{version}")
    project.store().live_versions()  # a state that cannot be read is exit 5 now, before any model loads
    if cfg.shadow or cfg.canary:  # they are written into the state at start-up: a read-only one is exit 5 now, not a traceback later
        project.store().check_writable()
    if cfg.capture_dir is not None:  # a folder that is not a capture, or cannot be written: say so now, exit 2
        from mldeploy.capture import CaptureStore

        CaptureStore(cfg.capture_dir, cfg.capture_max_bytes).close()
    from mldeploy.server.logs import FORMATS, log_config
    from mldeploy.server.protocol import with_header_timeout

    if log_format not in FORMATS:
        raise UsageError(f"--log-format {log_format!r}: choose {' or '.join(FORMATS)}")
    if log_level.lower() not in ("critical", "error", "warning", "info", "debug", "trace"):
        raise UsageError(f"--log-level {log_level!r}: choose debug, info, warning or error")
    sock = bind(host, port)  # before any model loads: a busy port is one line and exit 2, not a load and a crash
    bound = sock.getsockname()[1]
    app = create_app(cfg)
    config = uvicorn.Config(app, host=host, port=bound, log_level=log_level, timeout_graceful_shutdown=30, http=with_header_timeout(cfg.header_timeout),
                            log_config=log_config(log_level, log_format))  # configures logging: every line from here is text or JSON
    logging.getLogger("mldeploy.server").info("starting on http://%s:%d: %s (loading models...)", host, bound, ", ".join(cfg.models),
                                              extra={"url": f"http://{host}:{bound}", "models": list(cfg.models)})
    if threads is not None:  # before any model loads: TensorFlow reads it once
        from mldeploy.models.threads import limit_threads

        limit_threads(threads)
    deployments = app.state.deployments
    try:  # here, not in the server's start-up: a version that cannot load is one line and exit 4, not a traceback and exit 3
        deployments.start()
    except BaseException:
        deployments.stop()
        sock.close()
        raise
    run_until_stopped(uvicorn.Server(config), sock)


def run_until_stopped(server, sock) -> None:
    """Serve until Ctrl-C or SIGTERM. uvicorn drains the requests in flight, then hands the signal back:
    SIGTERM then ends the process on that signal (143 in a shell), as a supervisor expects; Ctrl-C ends
    here, with a log line and 130, not a traceback or an error line."""
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        logging.getLogger("mldeploy.server").info("stopped (Ctrl-C)")
        raise SystemExit(130) from None


def bind(host: str, port: int):
    """A listening socket on ``host:port``, as uvicorn would open it; a port in use or not allowed is a
    UsageError (exit 2) naming it."""
    import socket

    from mldeploy.errors import UsageError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        why = "in use (another server?): choose another --port, or --port 0 for a free one" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise UsageError(f"cannot listen on {host}:{port}: {why}") from None
    sock.set_inheritable(True)
    return sock
