"""Several collectors writing one HQ database at the same time (sync/hq/engine.py).

Two HqDb connections stand for two collectors. The first is held inside its write
transaction (after its checks, before its commit) while the second stores: on
PostgreSQL collectors write concurrently, so these tests pin down what must still
hold whatever the interleaving - a code redeemed twice is flagged exactly once, a void
racing its redemption is applied, and a reader paging by cursor never passes a row
committed late. SQLite has one writer at a time; the same races must give the same
results there."""

import threading
import time
import uuid

import pytest

from sync.hq.db import HqDb, events_after
from sync.protocol import EVENT_FIELDS

PAUSE = 1.0  # how long the first writer holds its transaction open (bounded)


@pytest.fixture
def two(db_url):
    first, second = HqDb(db_url), HqDb(db_url)
    yield first, second
    first.close()
    second.close()


def event(i, *, code="c1", kind="redeem", voids=None, device="k1", store="s1"):
    return {"id": f"e{i}", "seq": i, "device": device, "store": store, "kind": kind,
            "voids": voids, "code_hash": code, "reward_id": "coffee", "list_version": 1,
            "at": f"2026-12-01T10:00:{i:02d}Z", "clock": "synced", "staff": None}


def held(db: HqDb, monkeypatch, where: str):
    """Make ``db`` stop inside its write transaction at ``where`` ("checked": after its
    checks, before its INSERT; "inserted": after the INSERT reached the database,
    before COMMIT) until the returned event is set (or 10 s)."""
    release, reached = threading.Event(), threading.Event()
    original = db._store_clean

    def store_clean(batches, found, now):
        if where == "checked":
            reached.set()
            release.wait(10)
        out = original(batches, found, now)
        if where == "inserted":
            db.conn.execute("SELECT 1").fetchone()  # sends the queued INSERT (a pipeline)
            reached.set()
            release.wait(10)
        return out

    monkeypatch.setattr(db, "_store_clean", store_clean)
    return release, reached


def in_thread(fn, *args):
    box: dict = {}

    def run():
        try:
            box["result"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def race(first: HqDb, second: HqDb, monkeypatch, a: tuple, b: tuple, where="checked"):
    """``first`` stores batch ``a`` and is held in its transaction while ``second``
    stores ``b``; both results (or errors) once both are done."""
    release, reached = held(first, monkeypatch, where)
    t1, r1 = in_thread(first.store_batch, *a)
    assert reached.wait(10), r1
    t2, r2 = in_thread(second.store_batch, *b)
    t2.join(PAUSE)  # the second either finishes meanwhile or waits for the first
    release.set()
    t1.join(15)
    t2.join(15)
    assert "error" not in r1 and "error" not in r2, (r1, r2)
    return r1["result"], r2["result"]


@pytest.mark.parametrize("held_first", ["k1", "k2"])
def test_one_code_redeemed_at_two_kiosks_by_two_collectors_is_flagged_exactly_once(
        two, monkeypatch, held_first):
    first, second = two
    a = ("p", "s1", "k1", [event(1, device="k1"), event(3, code="other-1", device="k1")])
    b = ("p", "s2", "k2", [event(2, device="k2", store="s2"),
                           event(4, code="other-2", device="k2", store="s2")])
    if held_first == "k2":
        a, b = b, a
    ra, rb = race(first, second, monkeypatch, a, b)
    flagged = second.rows("SELECT event_id, kind FROM conflicts")
    assert len(flagged) == 1 and flagged[0]["kind"] == "over_redeemed"
    assert ra.conflicts == [] and rb.conflicts == [flagged[0]["event_id"]]  # the later one
    assert second.count("events") == 4
    again = second.store_batch(*b)  # a redelivery changes nothing
    assert again.conflicts == [] and second.count("conflicts") == 1


def test_a_void_racing_its_redemption_on_another_collector_is_applied(two, monkeypatch):
    first, second = two
    race(first, second, monkeypatch, ("p", "s1", "k1", [event(1)]),
         ("p", "s1", "k1", [event(2, kind="void", voids="e1")]))
    assert second.rows("SELECT kind FROM conflicts") == []  # not "void_unknown"
    assert second.rows("SELECT voided_by FROM events WHERE id = 'e1'") == [{"voided_by": "e2"}]
    assert second.store_batch("p", "s1", "k2", [event(5, device="k2")]).conflicts == []  # c1 free


def test_collectors_storing_different_codes_do_not_wait_for_each_other(pg, monkeypatch):
    url = pg.create_db(f"r{uuid.uuid4().hex[:10]}")
    first, second = HqDb(url), HqDb(url)
    try:
        release, reached = held(first, monkeypatch, "checked")
        t1, _ = in_thread(first.store_batch, "p", "s1", "k1", [event(1, code="a")])
        assert reached.wait(10)
        started = time.monotonic()
        second.store_batch("p", "s2", "k2", [event(2, code="b", device="k2", store="s2")])
        waited = time.monotonic() - started
        release.set()
        t1.join(15)
        assert waited < PAUSE and first.count("events") == 2
    finally:
        release.set()
        first.close()
        second.close()


def test_a_reader_paging_by_cursor_never_passes_a_row_committed_late(two, monkeypatch):
    first, second = two
    fields = EVENT_FIELDS
    reader = second.engine.connect()  # the API's own connection (no migrations to wait for)
    release, reached = held(first, monkeypatch, "inserted")  # e1 has its cursor, uncommitted
    t1, r1 = in_thread(first.store_batch, "p", "s1", "k1", [event(1, code="a")])
    assert reached.wait(10), r1
    t2, r2 = in_thread(second.store_batch, "p", "s2", "k2",
                       [event(2, code="b", device="k2", store="s2")])
    t2.join(PAUSE)  # PostgreSQL: committed meanwhile with a higher cursor than e1
    try:
        t3, page = in_thread(events_after, reader, 0, 100, fields)
        t3.join(PAUSE / 2)
        release.set()
        for t in (t1, t2, t3):
            t.join(15)
        assert "error" not in page, page
        seen = page["result"]  # what it got while e1 was in flight (SQLite: nothing yet)
        rest = events_after(reader, seen[-1]["cursor"] if seen else 0, 100, fields)
        assert sorted(e["id"] for e in seen + rest) == ["e1", "e2"]  # e1 not passed
        cursors = [e["cursor"] for e in seen + rest]
        assert cursors == sorted(cursors)
    finally:
        release.set()
        reader.close()


class _Message:
    def __init__(self, topic: str, events: list[dict]):
        import json

        self.topic, self.payload, self.mid, self.qos = topic, json.dumps(events).encode(), 1, 1


class _Client:  # what the collector publishes, recorded (no broker needed here)
    def __init__(self):
        self.sent: list[str] = []

    def publish(self, topic, payload, qos=0, properties=None):
        self.sent.append(topic)


def test_a_batch_the_database_refuses_does_not_hold_back_its_group(pg):
    """One group, one transaction; a batch PostgreSQL refuses (a seq beyond its column)
    fails the group, and each batch is then stored alone: the others are acked, that
    one is not (its device sends it again), and the connection goes on working."""
    from sync.hq.collect import Collector

    db = HqDb(pg.create_db(f"r{uuid.uuid4().hex[:10]}"))
    try:
        collector, client = Collector(db, "p", group="g"), _Client()
        topic = "kiosk/v1/p/stores/s1/devices/{}/redemptions"
        collector._handle(client, [
            _Message(topic.format("k1"), [event(1, code="a")]),
            _Message(topic.format("k2"), [{**event(2, code="b", device="k2"), "seq": 2**40}]),
            _Message(topic.format("k3"), [event(3, code="c", device="k3")])])
        assert sorted(r["id"] for r in db.rows("SELECT id FROM events")) == ["e1", "e3"]
        assert sorted(t.split("/")[-2] for t in client.sent if t.endswith("/acks")) == ["k1", "k3"]
        assert db.store_batch("p", "s1", "k4", [event(4, code="d", device="k4")]).new == 1
    finally:
        db.close()


def test_a_burst_group_takes_a_bounded_number_of_locks(pg, monkeypatch):
    """PostgreSQL's lock table is shared and small (64 x max_connections by default): a
    group of 3,000 events must not take a lock per code and id (6,000 locks; four
    collectors at once ran out of shared memory), but at most KEY_BUCKETS."""
    from sync.hq.engine import KEY_BUCKETS, KEY_LOCKS

    url = pg.create_db(f"r{uuid.uuid4().hex[:10]}")
    first, watcher = HqDb(url), HqDb(url)
    try:
        release, reached = held(first, monkeypatch, "checked")
        group = [event(i, code=f"code-{i}") for i in range(3000)]
        t1, r1 = in_thread(first.store_batch, "p", "s1", "k1", group)
        assert reached.wait(30), r1
        held_locks = watcher.conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = ? "
            "AND objsubid = 2 AND granted", (KEY_LOCKS,)).fetchone()[0]
        release.set()
        t1.join(30)
        assert "error" not in r1 and first.count("events") == 3000
        assert 0 < held_locks <= KEY_BUCKETS
    finally:
        release.set()
        first.close()
        watcher.close()
