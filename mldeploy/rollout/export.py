"""The objects that plug mldeploy's verdict into a rollout controller, as plain data (the command line
writes them as YAML; the tests validate them against the controllers' own CRD schemas).

* Argo Rollouts: an ``AnalysisTemplate`` whose web metric asks ``GET /admin/models/NAME/analysis`` and
  reads ``$.verdict.status``: ``pass`` is success, ``fail`` is failure, anything else (inconclusive,
  report only) is neither, which Argo counts as inconclusive and pauses on. Its variant runs
  ``mldeploy shadow --capture`` as a Job: exit 0 passes, anything else fails.
* Flagger: a ``Canary`` whose analysis calls mldeploy's webhooks (``confirm-promotion`` answers 200
  only on a pass; ``rollback`` answers 200, asking Flagger to roll back, only on a fail) and checks a
  ``MetricTemplate`` of the canary's error rate that Prometheus computes from ``/metrics``; its
  ``post-rollout`` webhook records the outcome in the state (a promotion, or the canary's rollback).

Both controllers run the new version in pods of their own: those replicas run ``mldeploy serve
--serve-version MODEL=VERSION``, count their requests as that version's canary, and the verdict judges
them fleet-wide (see :func:`mldeploy.rollout.analysis.canary_under_test`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

ARGO_API = "argoproj.io/v1alpha1"
FLAGGER_API = "flagger.app/v1beta1"


@dataclass(frozen=True)
class Target:
    """What is rolled out, and where mldeploy answers."""

    model: str
    url: str = "http://mldeploy:8000"  # the mldeploy Service, as the controller reaches it
    secret: str = "mldeploy-admin"  # a Secret with the admin token under the key ``token``
    min_requests: int = 20
    min_compared: int = 20
    bounds: tuple[tuple[str, float], ...] = ()  # gate bounds for the analysis (max_error_rate=0.02, ...)

    @property
    def name(self) -> str:
        return f"mldeploy-{self.model}"

    @property
    def query(self) -> str:
        return urlencode({"min_requests": self.min_requests, "min_compared": self.min_compared, **dict(self.bounds)})

    def analysis_url(self, arg: str = "{{args.mldeploy-url}}") -> str:
        return f"{arg}/admin/models/{self.model}/analysis?{self.query}"


def argo_analysis_template(t: Target, interval: str = "1m", count: int = 10) -> dict[str, Any]:
    """An ``AnalysisTemplate`` with one web metric on mldeploy's verdict."""
    return {
        "apiVersion": ARGO_API,
        "kind": "AnalysisTemplate",
        "metadata": {"name": t.name, "labels": {"app.kubernetes.io/managed-by": "mldeploy"}},
        "spec": {
            "args": [
                {"name": "mldeploy-url", "value": t.url},
                {"name": "admin-token", "valueFrom": {"secretKeyRef": {"name": t.secret, "key": "token"}}},
            ],
            "metrics": [{
                "name": "mldeploy-verdict",
                "interval": interval,
                "count": count,
                "successCondition": 'result == "pass"',
                "failureCondition": 'result == "fail"',
                "failureLimit": 0,
                "inconclusiveLimit": count,
                "provider": {"web": {
                    "url": t.analysis_url(),
                    "headers": [{"key": "Authorization", "value": "Bearer {{args.admin-token}}"}],
                    "jsonPath": "{$.verdict.status}",
                    "timeoutSeconds": 30,
                }},
            }],
        },
    }


def argo_promote_template(t: Target) -> dict[str, Any]:
    """An ``AnalysisTemplate`` for the Rollout's last step: ``POST /admin/models/NAME/promote`` with the
    version the canary pods served (the Rollout passes it as the ``version`` argument), so the state's
    history says what went live and when, and its replicas stop counting that version as a canary."""
    return {
        "apiVersion": ARGO_API,
        "kind": "AnalysisTemplate",
        "metadata": {"name": f"{t.name}-promote", "labels": {"app.kubernetes.io/managed-by": "mldeploy"}},
        "spec": {
            "args": [
                {"name": "mldeploy-url", "value": t.url},
                {"name": "admin-token", "valueFrom": {"secretKeyRef": {"name": t.secret, "key": "token"}}},
                {"name": "version"},
            ],
            "metrics": [{
                "name": "mldeploy-promote",
                "count": 1,
                "successCondition": f'result == "{t.model}@{{{{args.version}}}}"',
                "failureLimit": 0,
                "provider": {"web": {
                    "method": "POST",
                    "url": f"{{{{args.mldeploy-url}}}}/admin/models/{t.model}/promote",
                    "headers": [{"key": "Authorization", "value": "Bearer {{args.admin-token}}"},
                                {"key": "Content-Type", "value": "application/json"}],
                    "jsonBody": {"version": "{{args.version}}", "reason": "Argo Rollouts: the canary's analysis passed"},
                    "jsonPath": "{$.routing.live}",
                    "timeoutSeconds": 30,
                }},
            }],
        },
    }


def argo_replay_template(t: Target, image: str, new: str, capture: str = "/capture", state: str = "postgresql://mldeploy@postgres/mldeploy",
                         claim: str = "mldeploy-capture") -> dict[str, Any]:
    """An ``AnalysisTemplate`` whose metric is a Job replaying the capture through ``new`` (exit 0 passes)."""
    return {
        "apiVersion": ARGO_API,
        "kind": "AnalysisTemplate",
        "metadata": {"name": f"{t.name}-replay", "labels": {"app.kubernetes.io/managed-by": "mldeploy"}},
        "spec": {
            "metrics": [{
                "name": "mldeploy-shadow-replay",
                "provider": {"job": {"spec": {
                    "backoffLimit": 0,
                    "template": {"spec": {
                        "restartPolicy": "Never",
                        "containers": [{
                            "name": "mldeploy",
                            "image": image,
                            "command": ["mldeploy", "shadow", "--capture", capture, "-m", t.model, "--new", new, "--no-progress",
                                        "--state", state],
                            "volumeMounts": [{"name": "capture", "mountPath": capture, "readOnly": True}],
                        }],
                        "volumes": [{"name": "capture", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}],
                    }},
                }}},
            }],
        },
    }


def flagger_objects(t: Target, deployment: str, port: int = 8000, prometheus: str = "http://prometheus.monitoring:9090",
                    interval: str = "1m", threshold: int = 5, max_error_rate: float = 1.0) -> list[dict[str, Any]]:
    """A ``MetricTemplate`` (the canary's error rate, percent, from ``/metrics``) and a ``Canary`` whose
    analysis checks it and calls mldeploy's webhooks."""
    query = (f'100 * sum(rate(mldeploy_requests_total{{model="{t.model}",route="canary",status!~"2.."}}[{{{{ interval }}}}])) '
             f'/ clamp_min(sum(rate(mldeploy_requests_total{{model="{t.model}",route="canary"}}[{{{{ interval }}}}])), 1e-9)')
    metric = {
        "apiVersion": FLAGGER_API,
        "kind": "MetricTemplate",
        "metadata": {"name": f"{t.name}-canary-error-rate"},
        "spec": {"provider": {"type": "prometheus", "address": prometheus}, "query": query},
    }
    hook = {"token": "${MLDEPLOY_ADMIN_TOKEN}"}  # Flagger sends no headers, only this metadata: put the token in (envsubst)
    canary = {
        "apiVersion": FLAGGER_API,
        "kind": "Canary",
        "metadata": {"name": deployment},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
            "service": {"port": port},
            "analysis": {
                "interval": interval,
                "threshold": threshold,
                "maxWeight": 50,
                "stepWeight": 10,
                "metrics": [{"name": "mldeploy-canary-error-rate", "templateRef": {"name": metric["metadata"]["name"]},
                             "thresholdRange": {"max": max_error_rate}, "interval": interval}],
                "webhooks": [
                    {"name": "mldeploy-confirm-promotion", "type": "confirm-promotion", "timeout": "30s",
                     "url": f"{t.url}/flagger/models/{t.model}/confirm-promotion?{t.query}",
                     "metadata": hook},
                    {"name": "mldeploy-rollback", "type": "rollback", "timeout": "30s",
                     "url": f"{t.url}/flagger/models/{t.model}/rollback?{t.query}",
                     "metadata": hook},
                    {"name": "mldeploy-post-rollout", "type": "post-rollout", "timeout": "30s",
                     "url": f"{t.url}/flagger/models/{t.model}/post-rollout",
                     "metadata": hook},
                ],
            },
        },
    }
    return [metric, canary]
