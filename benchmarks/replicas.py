"""Many replicas on one PostgreSQL state: how fast they agree, and what the database costs the request path.

A real PostgreSQL server (Debian's package, started here as in the tests) and four real ``mldeploy serve``
processes on loopback ports, all on ``--state postgresql://...``:

1. **Agreement**: 50 promotions (faces@v1 <-> faces@twin, the same network under another name, so that
   loading a version is not what is timed; through the library as ``mldeploy promote`` does); for each, the time from its commit until every replica answers with the new version (each
   replica's ``/readyz`` polled every 5 ms on a thread of its own). Target: p99 under 1 s.
2. **The database away**: a client keeps sending requests to every replica; the database is stopped for
   ``--outage`` seconds (30), then started again. Target: no failed request while it is away. Then one
   promotion; target: every replica applies it within 10 s of the database's return.
3. **The request path**: one replica on the SQLite store and one on PostgreSQL, the same requests, in
   alternating rounds; target: live p50 within 2% of the SQLite store's (the request path reads no state).

Run from the repository root (as root, or as a user who can run initdb):
    .venv/bin/python benchmarks/replicas.py [--outage 30] [--promotions 50]
Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from common import ENV, ROOT, free_port, verdict

sys.path.insert(0, str(ROOT))
from tests.helpers.postgres import PostgresServer  # noqa: E402  (the tests' own way to start a server)

PHOTO = (ROOT / "sample_images" / "camera.jpg").read_bytes()


class Replica:
    def __init__(self, state: str, cwd: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(cwd / f"serve-{self.port}.log", "w")
        self.process = subprocess.Popen([sys.executable, "-m", "mldeploy", "serve", "-m", "faces", "--port", str(self.port), "--state", state,
                                         "--log-level", "warning"], cwd=cwd, env=ENV, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"replica on {self.port} did not start")

    def live(self, client: httpx.Client) -> str:
        return client.get(f"{self.url}/readyz", timeout=2).json()["models"]["faces"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


def agreement(replicas, project, promotions: int) -> list[float]:
    from mldeploy.rollout.releases import promote

    registry = project.registry(with_live=False)
    delays = []
    for n in range(promotions):
        target = registry.resolve("faces@twin" if n % 2 == 0 else "faces@v1")
        seen: dict[int, float] = {}

        def watch(i, replica):
            with httpx.Client() as client:
                while time.monotonic() < deadline:
                    try:
                        if replica.live(client) == target.ref:
                            seen[i] = time.monotonic()
                            return
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.005)

        deadline = time.monotonic() + 15
        promote(project, target, reason=f"benchmark {n}", force=True)
        committed = time.monotonic()
        threads = [threading.Thread(target=watch, args=(i, r)) for i, r in enumerate(replicas)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        delays.append(max(seen.values()) - committed if len(seen) == len(replicas) else float("inf"))
    return delays


def outage(replicas, server: PostgresServer, project, seconds: float) -> tuple[int, int, float]:
    from mldeploy.rollout.releases import promote

    stop, failures, sent = threading.Event(), [0], [0]

    def client(replica):
        with httpx.Client() as c:
            while not stop.is_set():
                try:
                    ok = c.post(f"{replica.url}/count-faces/", files={"file": ("camera.jpg", PHOTO)}, timeout=30).status_code == 200
                except httpx.HTTPError:
                    ok = False
                sent[0] += 1
                failures[0] += not ok

    threads = [threading.Thread(target=client, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    time.sleep(2)
    server.stop()
    time.sleep(seconds)
    server.start()
    back = time.monotonic()
    stop.set()
    for t in threads:
        t.join()
    target = project.registry(with_live=False).resolve("faces@twin" if project.store().live_versions().get("faces") != "twin" else "faces@v1")
    promote(project, target, reason="after the outage", force=True)
    with httpx.Client() as c:
        while time.monotonic() - back < 30 and not all(r.live(c) == target.ref for r in replicas):
            time.sleep(0.05)
    return sent[0], failures[0], time.monotonic() - back


def request_path(cwd: Path, url: str, rounds: int = 6, per_round: int = 40) -> tuple[float, float]:
    sqlite, postgres = Replica(str(cwd / "sqlite-state"), cwd), Replica(url, cwd)
    times = {sqlite.url: [], postgres.url: []}
    try:
        with httpx.Client() as c:
            for _ in range(rounds):
                for replica in (sqlite, postgres):
                    for _ in range(per_round):
                        started = time.perf_counter()
                        c.post(f"{replica.url}/count-faces/", files={"file": ("camera.jpg", PHOTO)}, timeout=30)
                        times[replica.url].append(time.perf_counter() - started)
    finally:
        sqlite.stop()
        postgres.stop()
    return statistics.median(times[sqlite.url]), statistics.median(times[postgres.url])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=30)
    parser.add_argument("--promotions", type=int, default=50)
    args = parser.parse_args()
    server = PostgresServer()
    missed = []
    cwd = Path(tempfile.mkdtemp(prefix="mldeploy-replicas-"))
    (cwd / "mldeploy.toml").write_text('[models.faces.twin]\nfrom = "faces@v1"\n')
    replicas = []
    try:
        url = server.new_database()
        from mldeploy.project import Project

        project = Project(state_dir=url, cwd=cwd)
        replicas = [Replica(url, cwd) for _ in range(4)]
        delays = sorted(agreement(replicas, project, args.promotions))
        p50, p99 = statistics.median(delays), delays[min(len(delays) - 1, int(0.99 * len(delays)))]
        print(f"1. a promotion applied by all 4 replicas: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms "
              f"over {len(delays)} promotions (target p99 < 1 s)")
        missed += [] if p99 < 1.0 else [f"promotion p99 {p99:.2f} s"]
        sent, failed, converged = outage(replicas, server, project, args.outage)
        print(f"2. database stopped {args.outage:g} s: {sent} requests, {failed} failed (target 0); every replica on the next promotion "
              f"{converged:.1f} s after it came back (target < 10 s)")
        missed += ([] if failed == 0 else [f"{failed} failed requests"]) + ([] if converged < 10 else [f"converged in {converged:.1f} s"])
        for r in replicas:
            r.stop()
        replicas = []
        sqlite_p50, pg_p50 = request_path(cwd, url)
        change = pg_p50 / sqlite_p50 - 1
        print(f"3. request p50: SQLite store {sqlite_p50 * 1000:.1f} ms, PostgreSQL store {pg_p50 * 1000:.1f} ms ({change:+.1%}; target within 2%)")
        missed += [] if abs(change) <= 0.02 else [f"request p50 {change:+.1%}"]
    finally:
        for r in replicas:
            r.stop()
        server.close()
    sys.exit(verdict(missed))


if __name__ == "__main__":
    main()
