"""/metrics as Prometheus conventions want it, read by prometheus_client's own parser: no `_created`
series, the canary weight a 0-1 ratio, errors countable per model (and a canary's error rate one query),
and HEAD answered."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.slow, pytest.mark.server]


def families(server) -> dict:
    text = server.client.get("/metrics").text
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(family, **labels):
    return [s for s in family.samples if all(s.labels.get(k) == v for k, v in labels.items())]


def test_metrics_follow_the_conventions(serve, project_dir):
    server = serve("--model", "faces", "--canary", "faces=blind:25")
    photo = project_dir / "photos" / "camera.jpg"
    assert server.post("/count-faces/", photo, headers={"X-Client-Id": "c1"}).status_code == 200
    assert server.client.post("/count-faces/", files={"file": ("notes.txt", b"hello")}).status_code == 415
    assert server.client.post("/models/faces/predict", files={"file": ("x.jpg", b"")}).status_code == 422
    text = server.client.get("/metrics").text
    assert "_created" not in text  # not doubled by a start-time series per counter
    f = families(server)
    weight = samples(f["mldeploy_canary_weight_ratio"], model="faces", version="blind")
    assert [s.value for s in weight] == [0.25]  # a ratio, not a percentage
    requests = f["mldeploy_requests"]
    assert sum(s.value for s in samples(requests, model="faces", status="200")) == 1
    failed = [s for s in requests.samples if s.labels["model"] == "faces" and not s.labels["status"].startswith("2")]
    assert sorted(s.labels["status"] for s in failed) == ["415", "422"]  # errors of a model: one query on one counter
    errors = samples(f["mldeploy_request_errors"], model="faces")
    assert {s.labels["endpoint"] for s in errors} == {"/count-faces/", "/models/{name}/predict"}
    head = server.client.head("/metrics")
    assert head.status_code == 200 and head.headers["content-type"].startswith("text/plain") and head.content == b""
