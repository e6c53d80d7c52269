"""The PostgreSQL state store on a real server the tests start (tests/helpers/postgres.py): the same
behaviour as the SQLite store, writes that cannot race across processes, changes announced to every
replica, and real ``serve`` replicas that agree."""

import multiprocessing
import threading
import time

import pytest

from mldeploy.errors import NothingToRollBackError, StateError
from mldeploy.store import KEEP, Route, open_store
from tests.store.test_store import _promote_many  # the same writers as the SQLite store's test

pytestmark = pytest.mark.slow


def test_the_store_behaves_as_the_sqlite_one(postgres_url):
    store = open_store(postgres_url)
    assert store.live_versions() == {} and store.history() == [] and not store.exists  # reading creates nothing
    first = store.switch("faces", "v2", current_default="v1", reason="better recall", command="mldeploy promote faces v2")
    assert (first.id, first.from_version, first.to_version) == (1, "v1", "v2") and store.exists
    assert store.switch("faces", "v2", current_default="v1") is None
    back = store.rollback("faces", current_default="v1", reason="too slow")
    assert (back.from_version, back.to_version, back.action) == ("v2", "v1", "rollback")
    assert [(r.from_version, r.to_version) for r in store.history("faces")] == [("v1", "v2"), ("v2", "v1")]
    assert store.set_route("faces", current_default="v1", shadow="v2") == Route("v2", None, 0.0)
    assert store.set_route("faces", current_default="v1", canary="v3", weight=10) == Route("v2", "v3", 10.0)
    assert store.set_route("faces", current_default="v1", shadow=None, canary=KEEP) == Route(None, "v3", 10.0)
    assert store.snapshot() == ({"faces": "v1"}, {"faces": Route(None, "v3", 10.0)})
    store.switch("faces", "v3", current_default="v1")  # the canary promoted: its route ends, so a rollback takes its traffic away
    store.rollback("faces", current_default="v1")
    assert store.snapshot() == ({"faces": "v1"}, {})
    store.add_shadow_stats("faces", "v1", "v2", {"requests": 3, "compared": 2, "iou_sum": 3.5})
    store.record_shadow_totals("faces", "v1", "v2", "capture-1", {"captured": 5})
    store.record_shadow_totals("faces", "v1", "v2", "capture-1", {"captured": 5})  # exactly once
    (row,) = store.shadow_stats("faces")
    assert (row["requests"], row["compared"], row["iou_sum"], row["captured"]) == (3, 2, 3.5, 5)
    store.set_pins("faces@v2", {"weights": ("/w.bin", "ab" * 32, 10)})
    assert store.pins("faces@v2")["weights"][:3] == ("/w.bin", "ab" * 32, 10)
    with pytest.raises(NothingToRollBackError):
        open_store(postgres_url).rollback("people", current_default="hog")


def test_history_is_append_only_in_the_database_itself(postgres_url):
    import psycopg

    store = open_store(postgres_url)
    store.switch("faces", "v2", current_default="v1")
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for statement in ("UPDATE history SET reason = 'x'", "DELETE FROM history"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(statement)
        assert conn.execute("SELECT version FROM mldeploy_schema").fetchone()[0] == 7  # the SQLite file's schema version


def test_concurrent_processes_lose_no_row_and_keep_the_chain(postgres_url):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    workers = [ctx.Process(target=_promote_many, args=(postgres_url, w, 25, barrier)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(120)
    assert [p.exitcode for p in workers] == [0, 0, 0, 0]
    rows = open_store(postgres_url).history("faces")
    assert len(rows) == 100 and rows[0].from_version == "v1"
    assert all(after.from_version == before.to_version for before, after in zip(rows, rows[1:]))  # no stale read


def test_two_guards_removing_one_canary_leave_one_row(postgres_url):
    """Replicas' canary guards judge the same canary and remove it at once: compare-and-set, one row."""
    store = open_store(postgres_url)
    store.set_route("faces", current_default="v1", canary="v2", weight=10)
    barrier = threading.Barrier(4)
    results = []

    def remove():
        barrier.wait()
        results.append(open_store(postgres_url).set_route("faces", current_default="v1", canary=None, action="canary-rollback",
                                                          reason="error rate", if_canary="v2"))

    threads = [threading.Thread(target=remove) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(r is not None for r in results) == 1
    assert [r.action for r in store.history("faces")].count("canary-rollback") == 1


def test_a_change_is_announced_at_once_and_a_lost_one_is_caught_on_reconnect(postgres_server, postgres_url):
    watcher, writer = open_store(postgres_url), open_store(postgres_url)
    watcher.poll_seconds = 3600  # no safety poll in this test: whatever it sees, it was told (or looked on reconnecting)
    writer.switch("faces", "v2", current_default="v1")
    stop, seen = threading.Event(), []

    def watch():
        for _ in watcher.watch(stop):
            seen.append((time.monotonic(), writer.live_versions().get("faces")))

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:  # the first look, on connecting
        time.sleep(0.05)
    before = len(seen)
    writer.switch("faces", "v3", current_default="v1")
    deadline = time.monotonic() + 30  # a deadline for a busy machine, not a measurement: the poll is off
    while len(seen) == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(seen) > before and seen[-1][1] == "v3"  # told: with the poll off, only the notification could say so
    postgres_server.stop()  # the listener's connection is gone; a change made meanwhile cannot be announced to it
    time.sleep(1.5)
    postgres_server.start()
    writer.switch("faces", "v4", current_default="v1")
    deadline = time.monotonic() + 30
    while not any(v == "v4" for _, v in seen) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    assert any(v == "v4" for _, v in seen)


def test_an_unreachable_database_is_one_state_error(postgres_server):
    store = open_store(postgres_server.url("postgres").replace(str(postgres_server.port), "1"))
    with pytest.raises(StateError, match="cannot be reached"):
        store.live_versions()
    assert "***" in open_store("postgresql://me:secret@127.0.0.1:1/x").location and "secret" not in open_store("postgresql://me:secret@127.0.0.1:1/x").location


def test_state_copy_from_a_folder_to_postgresql_keeps_the_history(cli, project_dir, postgres_url):
    folder = open_store(project_dir / ".mldeploy")
    folder.switch("faces", "v2", current_default="v1", reason="first")
    folder.rollback("faces", current_default="v1", reason="second")
    folder.set_route("faces", current_default="v1", shadow="v2")
    folder.add_shadow_stats("faces", "faces@v1", "faces@v2", {"requests": 7})
    folder.set_pins("faces@v2", {"weights": ("/w", "cd" * 32, 3)})
    result = cli("state", "copy", "--to", postgres_url)
    assert result.exit_code == 0, result.output
    assert "3 history rows" in result.stderr and "1 pins rows" in result.stderr
    copied = open_store(postgres_url)
    assert copied.history() == folder.history() and copied.snapshot() == folder.snapshot()
    assert copied.shadow_stats("faces")[0]["requests"] == 7 and copied.pins("faces@v2") == folder.pins("faces@v2")
    assert copied.switch("faces", "v3", current_default="v1").id == 4  # the ids go on from the copied ones
    again = cli("state", "copy", "--to", postgres_url)  # never into a store that holds a history
    assert again.exit_code == 5 and "already holds a history" in again.stderr
    assert len(open_store(postgres_url).history()) == 4
