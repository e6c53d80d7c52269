"""Several real ``serve`` replicas on one PostgreSQL state (a server the tests start): a promotion reaches
every replica, and while the database is away each keeps serving its last routing."""

import time

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.server]


def test_replicas_on_one_database_agree_and_keep_serving_while_it_is_away(serve, project_dir, postgres_server, postgres_url):
    replicas = [serve("--model", "faces", "--state", postgres_url) for _ in range(3)]

    def live_everywhere(version):
        return all(_live(r) == f"faces@{version}" for r in replicas)

    from mldeploy.project import Project
    from mldeploy.rollout.releases import promote

    project = Project(state_dir=postgres_url, cwd=project_dir)
    promote(project, project.registry().resolve("faces@blind"), reason="test")
    deadline = time.monotonic() + 30  # told within a second here; the deadline is for a busy machine
    while not live_everywhere("blind") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_everywhere("blind")
    postgres_server.stop()
    try:
        for r in replicas:  # every replica keeps its last routing, and answers
            assert r.post("/count-faces/", project_dir / "photos" / "camera.jpg").status_code == 200
            assert _live(r) == "faces@blind"
    finally:
        postgres_server.start()
    promote(project, project.registry().resolve("faces@v1"), reason="back")
    deadline = time.monotonic() + 30
    while not live_everywhere("v1") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert live_everywhere("v1")


def _live(replica) -> str:
    """The live version a replica routes by now (what it says on /models)."""
    return replica.client.get("/models", timeout=5).json()["models"][0]["live"]


def test_the_analysis_endpoint_judges_the_fleets_canary(serve, project_dir, postgres_url):
    """Two replicas split a canary's traffic; the verdict counts both, and is inconclusive on too little."""
    import httpx

    env = {"MLDEPLOY_ADMIN_TOKEN": "t0ken"}
    replicas = [serve("--model", "faces", "--state", postgres_url, "--canary", "faces=blind:100", **env) for _ in range(2)]
    auth = {"Authorization": "Bearer t0ken"}
    assert replicas[0].client.get("/admin/models/faces/analysis").status_code == 401
    early = replicas[0].client.get("/admin/models/faces/analysis", headers=auth).json()
    assert early["verdict"]["status"] == "inconclusive" and "fewer than 20" in early["notes"][0]
    photo = project_dir / "photos" / "camera.jpg"
    for n in range(12):
        assert replicas[n % 2].post("/count-faces/", photo).json()["version"] == "faces@blind"
    deadline = time.monotonic() + 10  # each replica adds its counts to the store every second
    judged = None
    while time.monotonic() < deadline:
        judged = replicas[1].client.get("/admin/models/faces/analysis", params={"min_requests": 12}, headers=auth).json()
        if judged["canary"]["requests"] == 12:
            break
        time.sleep(0.2)
    assert judged["canary"]["requests"] == 12 and judged["canary"]["errors"] == 0  # both replicas' requests
    assert judged["verdict"]["status"] == "pass" and [g["gate"] for g in judged["gates"]] == ["max_error_rate"]
    strict = replicas[0].client.get("/admin/models/faces/analysis", params={"min_requests": 12, "max_p95_ms": 0.001}, headers=auth).json()
    assert strict["verdict"]["status"] == "fail" and strict["verdict"]["deciding"] == ["max_p95_ms"]
    assert httpx.get(f"{replicas[0].url}/admin/models/faces/analysis", params={"max_error_rate": "x"}, headers=auth).status_code in (400, 422)


def test_flaggers_webhooks_answer_from_the_same_verdict(serve, project_dir, postgres_url):
    server = serve("--model", "faces", "--state", postgres_url, "--canary", "faces=blind:100", MLDEPLOY_ADMIN_TOKEN="t0ken")
    hook = {"name": "faces-api", "namespace": "prod", "phase": "Progressing", "metadata": {"token": "t0ken"}}
    confirm, rollback = "/flagger/models/faces/confirm-promotion", "/flagger/models/faces/rollback"
    assert server.client.post(confirm, json={**hook, "metadata": {"token": "wrong"}}).status_code == 401
    early = server.client.post(confirm, json=hook)
    assert early.status_code == 412 and early.json()["verdict"]["status"] == "inconclusive"  # Flagger waits
    for _ in range(5):
        server.post("/count-faces/", project_dir / "photos" / "camera.jpg")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and server.client.post(confirm, params={"min_requests": 5}, json=hook).status_code != 200:
        time.sleep(0.2)
    assert server.client.post(confirm, params={"min_requests": 5}, json=hook).status_code == 200
    assert server.client.post(rollback, params={"min_requests": 5}, json=hook).status_code == 412  # a pass: no rollback
    assert server.client.post(rollback, params={"min_requests": 5, "max_p95_ms": 0.001}, json=hook).status_code == 200  # a fail: roll back


def test_a_controllers_canary_pod_is_judged_for_the_fleet_and_its_outcome_recorded(serve, project_dir, postgres_url):
    """Argo Rollouts or Flagger runs the new version in pods of its own (``--serve-version``): those count
    as the canary, any replica's verdict judges them, and the controller's end is recorded in the state."""
    import yaml

    from mldeploy.project import Project
    from mldeploy.rollout.export import Target, argo_promote_template

    env = {"MLDEPLOY_ADMIN_TOKEN": "t0ken"}
    auth = {"Authorization": "Bearer t0ken"}
    stable = [serve("--model", "faces", "--state", postgres_url, **env) for _ in range(2)]
    pod = serve("--model", "faces", "--state", postgres_url, "--serve-version", "faces=blind",
                "--canary-max-p95-ms", "0.001", "--canary-min-requests", "3", **env)  # its own guard fails: never writes the state
    photo = project_dir / "photos" / "camera.jpg"
    assert [s.post("/count-faces/", photo).json()["version"] for s in stable] == ["faces@v1", "faces@v1"]
    answers = [pod.post("/count-faces/", photo).json() for _ in range(6)]
    assert {(a["version"], a["route"]) for a in answers} == {("faces@blind", "canary")}
    assert pod.client.get("/models").json()["models"][0]["serve_version"] == "faces@blind"

    judged, deadline = None, time.monotonic() + 30
    while time.monotonic() < deadline:  # asked of a stable replica, which has no canary of its own
        judged = stable[0].client.get("/admin/models/faces/analysis", params={"min_requests": 6}, headers=auth).json()
        if judged["canary"] and judged["canary"]["requests"] == 6:
            break
        time.sleep(0.2)
    assert judged["canary"]["version"] == "faces@blind" and judged["canary"]["requests"] == 6
    assert judged["verdict"]["status"] == "pass" and any("--serve-version" in n for n in judged["notes"])
    strict = stable[1].client.get("/admin/models/faces/analysis", params={"min_requests": 6, "max_p95_ms": 0.001}, headers=auth).json()
    assert strict["verdict"]["status"] == "fail"
    project = Project(state_dir=postgres_url, cwd=project_dir)
    assert project.store().live_versions().get("faces", "v1") == "v1" and project.store().history("faces") == []  # the pod's guard wrote nothing

    hook = {"name": "faces-api", "namespace": "prod", "metadata": {"token": "t0ken"}}
    failed = stable[0].client.post("/flagger/models/faces/post-rollout", json={**hook, "phase": "Failed"})
    assert failed.status_code == 200
    row = project.store().history("faces")[-1]
    assert row.action == "canary-rollback" and "Flagger canary prod/faces-api rolled back faces@blind" in row.reason
    assert stable[0].client.post("/flagger/models/faces/post-rollout", json={**hook, "phase": "Progressing"}).status_code == 400

    # Argo Rollouts' last step, as `mldeploy export argo` writes it: the promotion, read back by its jsonPath.
    web = argo_promote_template(Target("faces"))["spec"]["metrics"][0]["provider"]["web"]
    body = yaml.safe_load(yaml.safe_dump(web["jsonBody"]).replace("{{args.version}}", "blind"))
    promoted = stable[1].client.post(web["url"].replace("{{args.mldeploy-url}}", ""), json=body, headers=auth).json()
    assert promoted["routing"]["live"] == "faces@blind"  # $.routing.live: the template's success condition
    assert project.store().history("faces")[-1].reason == "Argo Rollouts: the canary's analysis passed"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(_live(s) == "faces@blind" for s in (*stable, pod)):
        time.sleep(0.1)
    assert pod.post("/count-faces/", photo).json()["route"] == "live"  # live now: an ordinary replica
    assert pod.client.get("/models").json()["models"][0]["serve_version"] is None
    nothing = stable[0].client.post("/flagger/models/faces/post-rollout", json={**hook, "phase": "Succeeded"})
    assert nothing.status_code == 400 and "nothing to promote" in nothing.json()["error"]["message"]
