"""``mldeploy export argo`` and ``export flagger``: the objects that make mldeploy the judge of an Argo
Rollouts or Flagger rollout, as YAML (library: :mod:`mldeploy.rollout.export`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from mldeploy.cli.console import App, err_console, escape
from mldeploy.cli.options import DEFAULT_MODEL

app = App(help="Write the objects that plug mldeploy's verdict into Argo Rollouts or Flagger.", add_completion=False)

ModelOption = Annotated[str, typer.Option("--model", "-m", metavar="NAME", help="The model being rolled out.")]
UrlOption = Annotated[str, typer.Option("--url", metavar="URL", help="mldeploy's Service as the controller reaches it.")]
OutputOption = Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE", show_default=False, help="Write here [default: stdout].")]
MinRequests = Annotated[int, typer.Option("--min-requests", min=1, metavar="N", help="Canary requests (every replica's) before a verdict.")]
MinCompared = Annotated[int, typer.Option("--min-compared", min=1, metavar="N", help="Shadow comparisons before a verdict.")]
MaxErrorRate = Annotated[Optional[float], typer.Option("--max-error-rate", min=0, max=1, metavar="SHARE", show_default=False,
                                                       help="The canary's error-rate bound [default: the server's, else 0.01].")]


def _write(documents: list[dict], output: Path | None) -> None:
    import yaml

    from mldeploy.fileio import atomic_write

    text = yaml.safe_dump_all(documents, sort_keys=False, width=120)
    if output is None:
        sys.stdout.write(text)
    else:
        err_console.print(f"wrote {escape(str(atomic_write(output, text.encode('utf-8'))))}")


def _target(model, url, min_requests, min_compared, max_error_rate, secret="mldeploy-admin"):
    from mldeploy.rollout.export import Target

    bounds = (("max_error_rate", max_error_rate),) if max_error_rate is not None else ()
    return Target(model, url.rstrip("/"), secret, min_requests, min_compared, bounds)


@app.command("argo")
def argo(
    model: ModelOption = DEFAULT_MODEL,
    url: UrlOption = "http://mldeploy:8000",
    secret: Annotated[str, typer.Option("--secret", metavar="NAME", help="Secret holding the admin token under the key token.")] = "mldeploy-admin",
    interval: Annotated[str, typer.Option("--interval", metavar="DURATION", help="How often Argo asks.")] = "1m",
    count: Annotated[int, typer.Option("--count", min=1, metavar="N", help="How many times Argo asks.")] = 10,
    replay_image: Annotated[Optional[str], typer.Option("--replay-image", metavar="IMAGE", show_default=False,
                                                        help="Also write a template whose Job replays the capture with this image.")] = None,
    new: Annotated[Optional[str], typer.Option("--new", metavar="VERSION", show_default=False, help="With --replay-image: the version the Job shadows.")] = None,
    min_requests: MinRequests = 20,
    min_compared: MinCompared = 20,
    max_error_rate: MaxErrorRate = None,
    output: OutputOption = None,
) -> None:
    """An Argo Rollouts AnalysisTemplate whose web metric is mldeploy's fleet-wide verdict.

    pass is success, fail is failure, inconclusive is neither (Argo pauses). A second template, for the
    Rollout's last step, promotes the version its canary pods served (argument version) in the state.
    With --replay-image, a third runs 'mldeploy shadow --capture' as a Job (exit 0 passes).

    Examples:
        mldeploy export argo -m faces --url http://mldeploy.prod:8000 > analysis.yaml
        mldeploy export argo -m faces --replay-image registry/mldeploy:1 --new v2 -o analysis.yaml
    """
    from mldeploy.errors import UsageError
    from mldeploy.rollout.export import argo_analysis_template, argo_promote_template, argo_replay_template

    t = _target(model, url, min_requests, min_compared, max_error_rate, secret)
    documents = [argo_analysis_template(t, interval, count), argo_promote_template(t)]
    if replay_image is not None:
        if new is None:
            raise UsageError("--replay-image needs --new VERSION: the version the Job shadows")
        documents.append(argo_replay_template(t, replay_image, new))
    _write(documents, output)


@app.command("flagger")
def flagger(
    deployment: Annotated[str, typer.Option("--deployment", metavar="NAME", help="The Deployment Flagger rolls out.")] = "mldeploy",
    model: ModelOption = DEFAULT_MODEL,
    url: UrlOption = "http://mldeploy:8000",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, metavar="PORT", help="The Service port.")] = 8000,
    prometheus: Annotated[str, typer.Option("--prometheus", metavar="URL", help="Prometheus, for the MetricTemplate.")] = "http://prometheus.monitoring:9090",
    min_requests: MinRequests = 20,
    min_compared: MinCompared = 20,
    max_error_rate: MaxErrorRate = None,
    output: OutputOption = None,
) -> None:
    """A Flagger MetricTemplate (the canary's error rate from /metrics) and a Canary that checks it and
    calls mldeploy's confirm-promotion (200 only on pass) and rollback (200 only on fail) webhooks, and
    post-rollout, which records the outcome in the state.

    Flagger sends webhooks no headers: the admin token goes in their metadata, written as
    ${MLDEPLOY_ADMIN_TOKEN} for envsubst.

    Examples:
        mldeploy export flagger --deployment mldeploy -m faces | envsubst > canary.yaml
    """
    from mldeploy.rollout.export import flagger_objects

    t = _target(model, url, min_requests, min_compared, max_error_rate)
    _write(flagger_objects(t, deployment, port, prometheus, max_error_rate=100 * (max_error_rate if max_error_rate is not None else 0.01)), output)
