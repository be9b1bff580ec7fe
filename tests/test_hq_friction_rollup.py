"""The friction report's roll-up (migration 0008, tables ``friction_daily`` and
``friction_waits``) answers as the computation over every activity row does, on both
engines: kept by triggers as batches arrive, and filled by the migration from rows
stored before it; medians within the documented 0.1 s of the exact ones."""

import random
from datetime import UTC, datetime, timedelta

from kiosk.core import timefmt
from sync.hq import activity, friction
from sync.hq.db import MIGRATIONS, HqDb
from sync.hq.engine import open_engine

START = datetime(2026, 11, 28, 22, 0, tzinfo=UTC)


def counter_day(rng: random.Random, device: str) -> list[dict]:
    """One device's audit trail over a few days: scans, refusals, typed codes, confirms
    after a random wait (milliseconds), timeouts, a code shown twice before its confirm,
    a confirm with no verdict, a confirm before its verdict (clock set back)."""
    rows, n, t = [], 0, START + timedelta(minutes=rng.randrange(60))

    def add(kind, **fields):
        nonlocal n
        n += 1
        rows.append({"n": n, "at": timefmt.format(t), "kind": kind, "source": None,
                     "verdict": None, "reward_id": "coffee", "code_hash": None, **fields})

    for i in range(120):
        code = f"{device}-c{i}"
        source = "keypad" if rng.random() < 0.2 else rng.choice(["camera", "scanner", None])
        verdict = rng.choice(["ready"] * 5 + list(friction.REASONS[:4]) + ["redeemed"])
        add("verdict", source=source, verdict=verdict, code_hash=code)
        t += timedelta(milliseconds=rng.randrange(300, 40_000))
        if verdict == "ready":
            fate = rng.random()
            if fate < 0.15:
                add("timeout", code_hash=code)
                if fate < 0.05:  # confirmed after it timed out: no pair
                    t += timedelta(seconds=3)
                    add("confirm", code_hash=code)
            elif fate < 0.25:  # shown again, then confirmed: the second verdict pairs
                add("verdict", source=source, verdict="ready", code_hash=code)
                t += timedelta(milliseconds=rng.randrange(300, 9_000))
                add("confirm", code_hash=code)
            elif fate < 0.28:  # the clock went back before the confirm: no pair
                t -= timedelta(seconds=5)
                add("confirm", code_hash=code)
            else:
                add("confirm", code_hash=code)
                if fate > 0.97:
                    add("confirm", code_hash=code)  # a second confirm pairs with nothing
        if rng.random() < 0.02:
            add("confirm", code_hash=None)
        t += timedelta(minutes=rng.randrange(1, 90))
    return rows


def store_all(conn, rng: random.Random) -> None:
    for store, device in [("s1", "k1"), ("s1", "k2"), ("s2", "k3"), ("s3", "k4")]:
        rows = counter_day(rng, device)
        i = 0
        while i < len(rows):  # batches of the sender's sizes, in n order
            size = rng.randrange(1, 60)
            activity.store_rows(conn, "cafe", store, device, rows[i:i + size])
            i += size
        activity.store_rows(conn, "cafe", store, device, rows[:30])  # a resend: nothing twice


def assert_same(conn, stores=None, since=""):
    got, want = friction.build(conn, stores, since), friction.from_rows(conn, stores, since)
    medians = [(a["median_confirm_s"], b["median_confirm_s"])
               for a, b in zip([*got["stores"], got["totals"]], [*want["stores"], want["totals"]],
                               strict=True)]
    for a, b in medians:
        assert (a is None) == (b is None)
        assert a is None or abs(a - b) <= 0.1 + 1e-9, (a, b)
    strip = [{**s, "median_confirm_s": None} for s in [*got["stores"], got["totals"]]]
    assert strip == [{**s, "median_confirm_s": None} for s in [*want["stores"], want["totals"]]]
    return got


def test_rollup_kept_at_ingest_answers_like_the_raw_rows(db_url):
    db = HqDb(db_url)
    try:
        store_all(db.conn, random.Random(17))
        report = assert_same(db.conn)
        assert [s["store"] for s in report["stores"]] == ["s1", "s2", "s3"]
        t = report["totals"]
        assert t["confirms"] > 150 and t["timeouts"] > 20 and 0 < t["typed"] < t["verdicts"]
        assert all(t["refusals"][r] > 10 for r in friction.REASONS[:4])
        assert 1 <= t["median_confirm_s"] <= 40
        for since in ("2026-11-29", "2026-11-30", "2026-12-30"):
            assert_same(db.conn, None, since)
        assert_same(db.conn, ("s1", "s3"), "2026-11-29")
        assert_same(db.conn, ("nowhere",))
        assert assert_same(db.conn, (), "") == friction.from_rows(db.conn, ())
        assert_same(db.conn, None, "2026-11-29T13:30:00Z")  # a time of day: the raw rows
        assert db.count("friction_daily") < db.count("activity") / 4
    finally:
        db.close()


def test_migration_fills_the_rollup_from_rows_stored_before_it(db_url):
    conn = open_engine(db_url).connect()
    try:
        conn.migrate([m for m in MIGRATIONS if m.name != friction.MIGRATION.name])
        store_all(conn, random.Random(3))
    finally:
        conn.close()
    db = HqDb(db_url)  # applies 0008: the roll-up filled from the rows above
    try:
        assert friction.MIGRATION.name in {r["name"] for r in db.rows("SELECT name FROM migrations")}
        assert db.count("friction_waits") > 0
        assert_same(db.conn)
        assert_same(db.conn, ("s2",), "2026-11-30")
        store_all(db.conn, random.Random(4))  # more devices' rows on top (same keys: resends)
        assert_same(db.conn)
    finally:
        db.close()


def test_bucket_median_is_the_median_of_the_bucket_values():
    assert friction._bucket_median({}) is None
    assert friction._bucket_median({12: 1}) == 1.2
    assert friction._bucket_median({10: 1, 30: 1}) == 2.0  # even count: the mean of the two
    assert friction._bucket_median({10: 2, 30: 1, 500: 1}) == 2.0
    assert friction._bucket_median({10: 3, 30: 1}) == 1.0
