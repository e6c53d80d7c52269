import contextlib
import hashlib
import multiprocessing
import sqlite3

import pytest

from mldeploy.errors import NothingToRollBackError, StateError
from mldeploy.store import open_store


def test_reading_creates_nothing(tmp_path):
    store = open_store(tmp_path / "state")
    assert store.live_versions() == {} and store.history() == [] and store.live("faces") is None
    assert not (tmp_path / "state").exists()


def test_promote_rollback_and_history(tmp_path):
    store = open_store(tmp_path / "state")
    first = store.switch("faces", "v2", current_default="v1", reason="better recall", command="mldeploy promote faces v2")
    assert (first.from_version, first.to_version, first.action) == ("v1", "v2", "promote")
    assert store.switch("faces", "v2", current_default="v1") is None  # already live: no row
    store.switch("people", "hog2", current_default="hog")
    back = store.rollback("faces", current_default="v1", reason="too slow")
    assert (back.from_version, back.to_version, back.action) == ("v2", "v1", "rollback")
    assert store.live_versions() == {"faces": "v1", "people": "hog2"}
    again = store.rollback("faces", current_default="v1")  # the previous live version is v2 again
    assert again.to_version == "v2"
    rows = store.history("faces")
    assert [(r.from_version, r.to_version) for r in rows] == [("v1", "v2"), ("v2", "v1"), ("v1", "v2")]
    assert rows[0].reason == "better recall" and rows[0].command == "mldeploy promote faces v2" and rows[0].at.endswith("+00:00")
    assert [r.id for r in store.history(limit=2)] == [3, 4]


def test_rollback_without_history_is_refused(tmp_path):
    store = open_store(tmp_path / "state")
    with pytest.raises(NothingToRollBackError, match="no earlier live version"):
        store.rollback("faces", current_default="v1")
    store.switch("faces", "v1", current_default="v1", action="canary-rollback", reason="canary failed")  # from == to
    with pytest.raises(NothingToRollBackError):
        store.rollback("faces", current_default="v1")


def test_history_is_append_only(tmp_path):
    store = open_store(tmp_path / "state")
    store.switch("faces", "v2", current_default="v1")
    db = sqlite3.connect(store.path)
    for statement in ("UPDATE history SET reason = 'x'", "DELETE FROM history"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute(statement)
    db.close()
    assert len(store.history()) == 1


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("content", [b"", b"this is not a database\n" * 100, b"SQLite format 3\x00" + b"\xff" * 200])
def test_a_damaged_file_is_reported_and_left_alone(tmp_path, content):
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.db").write_bytes(content)
    before = _digest(state / "state.db")
    store = open_store(state)
    if content:
        with pytest.raises(StateError, match="state.db"):
            store.live_versions()
    else:
        assert store.live_versions() == {}  # an empty file is an empty database
    with pytest.raises(StateError) if content else contextlib.nullcontext():
        store.switch("faces", "v2", current_default="v1")
    if content:
        assert _digest(state / "state.db") == before


def test_someone_elses_database_is_not_touched(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    db = sqlite3.connect(state / "state.db")
    db.execute("CREATE TABLE invoices (n INTEGER)")
    db.commit()
    db.close()
    before = _digest(state / "state.db")
    with pytest.raises(StateError, match="not an mldeploy state database"):
        open_store(state).switch("faces", "v2", current_default="v1")
    assert _digest(state / "state.db") == before


def test_a_newer_schema_is_refused(tmp_path):
    store = open_store(tmp_path)
    store.switch("faces", "v2", current_default="v1")
    db = sqlite3.connect(store.path)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(StateError, match="newer mldeploy"):
        store.live_versions()


def test_state_dir_that_is_a_file(tmp_path):
    (tmp_path / "state").write_text("mine")
    with pytest.raises(StateError, match="is a file"):
        open_store(tmp_path / "state").switch("faces", "v2", current_default="v1")
    assert (tmp_path / "state").read_text() == "mine"


def _promote_many(state_dir, worker, count, barrier):
    store = open_store(state_dir)
    barrier.wait()
    for n in range(count):
        store.switch("faces", f"w{worker}-{n}", current_default="v1", reason=f"worker {worker}")


def test_concurrent_processes_lose_no_row_and_keep_the_chain(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    workers = [ctx.Process(target=_promote_many, args=(tmp_path / "state", w, 25, barrier)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
    assert [p.exitcode for p in workers] == [0, 0, 0, 0]
    rows = open_store(tmp_path / "state").history("faces")
    assert len(rows) == 100 and len({r.to_version for r in rows}) == 100
    assert rows[0].from_version == "v1"
    for before, after in zip(rows, rows[1:]):
        assert after.from_version == before.to_version  # nobody read a stale live version
    assert open_store(tmp_path / "state").live("faces") == rows[-1].to_version


def test_routes_and_their_history(tmp_path):
    from mldeploy.store import KEEP, Route

    store = open_store(tmp_path / "state")
    assert store.routes() == {} and store.snapshot() == ({}, {})
    assert store.set_route("faces", current_default="v1", shadow="v2") == Route("v2", None, 0.0)
    assert store.set_route("faces", current_default="v1", canary="v3", weight=10) == Route("v2", "v3", 10.0)
    assert store.set_route("faces", current_default="v1", weight=50) == Route("v2", "v3", 50.0)  # shadow and canary kept
    assert store.set_route("faces", current_default="v1", shadow=None, canary=KEEP) == Route(None, "v3", 50.0)
    assert store.set_route("faces", current_default="v1", canary=None) == Route(None, None, 0.0)
    assert store.routes() == {}  # nothing set: not listed
    rows = store.history("faces")
    assert [r.action for r in rows] == ["route"] * 5 and all(r.from_version == r.to_version == "v1" for r in rows)
    assert rows[1].reason == "shadow v2, canary v3 at 10%"
    with pytest.raises(NothingToRollBackError):  # route changes are not live-version changes
        store.rollback("faces", current_default="v1")


def test_promoting_the_canary_ends_its_route_so_a_rollback_takes_its_traffic_away(tmp_path):
    from mldeploy.store import Route

    store = open_store(tmp_path / "state")
    store.set_route("faces", current_default="v1", shadow="v3", canary="v2", weight=100)
    store.switch("faces", "v2", current_default="v1")
    assert store.routes() == {"faces": Route("v3", None, 0.0)}  # the shadow is another matter: it stays
    store.rollback("faces", current_default="v1")
    assert store.snapshot() == ({"faces": "v1"}, {"faces": Route("v3", None, 0.0)})  # v1 takes all the traffic again
    store.set_route("faces", current_default="v1", canary="v4", weight=10)
    store.switch("faces", "v2", current_default="v1")  # another version promoted: the v4 canary goes on
    assert store.routes()["faces"] == Route("v3", "v4", 10.0)


def test_shadow_counters_add_up(tmp_path):
    store = open_store(tmp_path / "state")
    store.add_shadow_stats("faces", "v1", "v2", {"requests": 3, "compared": 2, "matched": 4, "iou_sum": 3.5})
    store.add_shadow_stats("faces", "v1", "v2", {"requests": 1, "dropped": 5})
    (row,) = store.shadow_stats("faces")
    assert (row["requests"], row["compared"], row["matched"], row["iou_sum"], row["dropped"]) == (4, 2, 4, 3.5, 5)
    with pytest.raises(ValueError, match="unknown shadow counters"):
        store.add_shadow_stats("faces", "v1", "v2", {"bogus": 1})


def test_a_schema_1_file_is_migrated_in_place(tmp_path):
    from mldeploy.store import db as state_module, releases

    store = open_store(tmp_path)
    db = sqlite3.connect(store.path)
    db.executescript(releases.SCHEMA)
    db.execute("INSERT INTO history (model, from_version, to_version, action, at) VALUES ('faces', 'v1', 'v2', 'promote', 'then')")
    db.execute("INSERT INTO live VALUES ('faces', 'v2', 'then', 1)")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    assert store.snapshot() == ({"faces": "v2"}, {})  # readable before any migration
    store.set_route("faces", current_default="v1", shadow="v3")
    assert sqlite3.connect(store.path).execute("PRAGMA user_version").fetchone()[0] == state_module.SCHEMA_VERSION
    assert store.live("faces") == "v2" and len(store.history()) == 2 and store.routes()["faces"].shadow_version == "v3"


def test_a_store_opens_from_a_location(tmp_path):
    from mldeploy.errors import UsageError
    from mldeploy.store import SQLiteStore, open_store

    for location in (tmp_path / "a", str(tmp_path / "a"), f"sqlite://{tmp_path / 'a'}", f"sqlite:{tmp_path / 'a'}"):
        store = open_store(location)
        assert isinstance(store, SQLiteStore) and store.path == tmp_path / "a" / "state.db"
    with pytest.raises(UsageError, match="no store for 'mysql'"):
        open_store("mysql://localhost/mldeploy")


def test_a_schema_3_file_gains_the_drift_and_coverage_columns_and_keeps_its_counters(tmp_path):
    from mldeploy.store import db as state_module, pins, releases, routes, shadow_stats

    store = open_store(tmp_path)
    db = sqlite3.connect(store.path)
    db.executescript(releases.SCHEMA + routes.SCHEMA + shadow_stats.SCHEMA + pins.SCHEMA)
    db.execute("INSERT INTO shadow_stats (model, live_version, shadow_version, compared, matched, first_at, updated_at) "
               "VALUES ('faces', 'v1', 'v2', 4, 7, 'then', 'then')")
    db.execute("PRAGMA user_version = 3")
    db.commit()
    db.close()
    store.add_shadow_stats("faces", "v1", "v2", {"compared": 1, "drifted": 2, "captured": 3, "evicted": 1})
    (row,) = store.shadow_stats("faces")
    assert (row["compared"], row["matched"], row["drifted"], row["captured"], row["evicted"]) == (5, 7, 2, 3, 1)
    assert sqlite3.connect(store.path).execute("PRAGMA user_version").fetchone()[0] == state_module.SCHEMA_VERSION == 7
