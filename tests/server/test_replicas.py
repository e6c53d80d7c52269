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
    deadline = time.monotonic() + 5
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
    deadline = time.monotonic() + 10
    while not live_everywhere("v1") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert live_everywhere("v1")


def _live(replica) -> str:
    """The live version a replica routes by now (what it says on /models)."""
    return replica.client.get("/models", timeout=5).json()["models"][0]["live"]
