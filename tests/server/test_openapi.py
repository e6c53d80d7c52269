"""The OpenAPI document is one a generated client can use: valid (openapi-spec-validator), a response
schema for every endpoint, the admin token as a bearer security scheme, /readyz's 503; and what the real
server answers matches it (every JSON answer checked against its schema)."""

import jsonschema
import pytest

from mldeploy.server.app import create_app
from mldeploy.server.config import ServerConfig


def spec_of(**config) -> dict:
    return create_app(ServerConfig(models=["faces"], **config)).openapi()


def test_the_document_is_valid_and_every_endpoint_has_a_response_schema():
    from openapi_spec_validator import validate

    spec = spec_of()
    validate(spec)
    ops = [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]
    assert len(ops) >= 15
    ids = [op["operationId"] for _, _, op in ops]
    assert len(ids) == len(set(ids))  # a client generator names a function per operation
    for path, method, op in ops:
        content = op["responses"]["200"].get("content", {})
        assert content, f"{method} {path}"
        for media, body in content.items():
            assert body.get("schema"), f"{method} {path} {media} has no schema"
    assert spec["components"]["securitySchemes"]["adminToken"] == {
        "type": "http", "scheme": "bearer", "description": "MLDEPLOY_ADMIN_TOKEN, as 'Authorization: Bearer <token>'"}
    admin = [(path, op) for path, method, op in ops if path.startswith("/admin/")]
    assert admin and all(op.get("security") == [{"adminToken": []}] for _, op in admin)
    assert "security" not in spec["paths"]["/models"]["get"]
    assert spec["paths"]["/readyz"]["get"]["responses"]["503"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Ready"}


def check(spec: dict, path: str, method: str, response) -> None:
    """``response`` (a live answer) against the schema the document gives its path, method and status."""
    documented = spec["paths"][path][method]["responses"][str(response.status_code)]
    schema = documented["content"]["application/json"]["schema"]
    jsonschema.Draft202012Validator({**schema, "components": spec["components"]}).validate(response.json())


@pytest.mark.slow
@pytest.mark.server
def test_live_answers_match_the_document(serve, project_dir, cli):
    server = serve("--model", "faces", "--shadow", "faces=v2", "--capture", "cap", MLDEPLOY_ADMIN_TOKEN="t0ken")
    spec = server.client.get("/openapi.json").json()
    auth = {"Authorization": "Bearer t0ken"}
    photo = project_dir / "photos" / "camera.jpg"
    check(spec, "/models/{name}/predict", "post", server.post("/models/faces/predict", photo, params={"format": "json"}))
    check(spec, "/count-faces/", "post", server.post("/count-faces/", photo))
    check(spec, "/predict", "post", server.post("/predict", photo, name="notes.txt"))  # 415: the error body
    for path, url in (("/models", "/models"), ("/healthz", "/healthz"), ("/readyz", "/readyz"),
                      ("/models/{name}/shadow", "/models/faces/shadow"), ("/models/{name}/accuracy", "/models/faces/accuracy"),
                      ("/models/{name}/accuracy", "/models/nobody/accuracy")):
        check(spec, path, "get", server.client.get(url))
    check(spec, "/admin/models/{name}/analysis", "get", server.client.get("/admin/models/faces/analysis", headers=auth))
    check(spec, "/admin/models/{name}/analysis", "get", server.client.get("/admin/models/faces/analysis"))  # 401
    check(spec, "/admin/models/{name}/promote", "post", server.client.post("/admin/models/faces/promote", json={"version": "v2"}, headers=auth))
    check(spec, "/admin/models/{name}/rollback", "post", server.client.post("/admin/models/faces/rollback", headers=auth))
    check(spec, "/admin/models/{name}/route", "post", server.client.post("/admin/models/faces/route", json={"canary": "v2", "weight": 10}, headers=auth))
    hook = {"name": "api", "namespace": "prod", "phase": "Progressing", "metadata": {"token": "t0ken"}}
    check(spec, "/flagger/models/{name}/confirm-promotion", "post", server.client.post("/flagger/models/faces/confirm-promotion", json=hook))
    check(spec, "/flagger/models/{name}/rollback", "post", server.client.post("/flagger/models/faces/rollback", json=hook))
    check(spec, "/flagger/models/{name}/post-rollout", "post", server.client.post("/flagger/models/faces/post-rollout", json={**hook, "phase": "Failed"}))
    image = server.post("/predict", photo)
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert "image/jpeg" in spec["paths"]["/predict"]["post"]["responses"]["200"]["content"]
