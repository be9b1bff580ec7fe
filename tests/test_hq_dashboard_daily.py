"""The dashboard's roll-up (migration 0007, table ``daily``) stays equal to the events
it sums, on both engines: clean groups, the event-by-event path, resends, voids that
come before or after their redemption, and the redemptions page shows its sums."""



from sync.hq.db import Batch, HqDb

SUMS = ("SELECT program, substr(at, 1, 10) AS day, store, coalesce(reward_id, '') AS reward_id, "
        "count(*) AS redeemed, count(voided_by) AS voided FROM events WHERE kind = 'redeem' "
        "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4")
DAILY = ("SELECT program, day, store, reward_id, redeemed, voided FROM daily "
         "WHERE redeemed > 0 OR voided > 0 ORDER BY 1, 2, 3, 4")


def ev(i, *, kind="redeem", voids=None, code=None, day="01", reward="coffee", device="k1"):
    return {"id": f"e{i}", "seq": i, "device": device, "store": "s1", "kind": kind,
            "voids": voids, "code_hash": code or f"c{i}", "reward_id": reward,
            "list_version": 1, "at": f"2026-12-{day}T10:00:00Z", "clock": "synced", "staff": None}


def test_daily_sums_equal_the_events_whatever_path_stored_them(hq_db):
    hq_db.store_batches([Batch("p", "s1", "k1", [ev(1), ev(2, day="02"), ev(3, reward=None)]),
                      Batch("p", "s2", "k2", [{**ev(4, device="k2"), "store": "s2"}])])
    hq_db.store_batch("p", "s1", "k1", [ev(1), ev(2, day="02")])  # resend: nothing counted twice
    hq_db.store_batch("p", "s1", "k1", [ev(5, kind="void", voids="e1", code="c1")])  # void after
    hq_db.store_batch("p", "s1", "k1", [ev(7, kind="void", voids="e6", code="c6")])  # void first
    hq_db.store_batch("p", "s1", "k1", [ev(6, day="02"), ev(8, code="c1")])  # e8 re-uses c1: flagged
    hq_db.store_batch("p", "s1", "k9", [ev(9, device="k9", code="c2")])  # over its uses too
    assert hq_db.rows(DAILY) == hq_db.rows(SUMS)
    by_day = {(r["day"], r["store"], r["reward_id"]): (r["redeemed"], r["voided"])
              for r in hq_db.rows(DAILY)}
    assert by_day[("2026-12-01", "s1", "coffee")] == (3, 1)  # e1 (voided), e8, e9
    assert by_day[("2026-12-02", "s1", "coffee")] == (2, 1)  # e2, e6 (voided first)
    assert by_day[("2026-12-01", "s1", "")] == (1, 0)
    assert by_day[("2026-12-01", "s2", "coffee")] == (1, 0)


def test_csv_export_pages_through_every_event_once_in_time_order(tmp_path, monkeypatch):
    """The export reads in (at, id) pages; ties on ``at`` across a page edge lose nothing."""
    import http.cookiejar
    import re
    import threading
    import time
    import urllib.parse
    import urllib.request

    import uvicorn

    from sync.hq import auth
    from sync.hq.web import make_app, pages
    from sync.testing import free_port

    monkeypatch.setattr(pages, "CSV_CHUNKS", (2, 3))
    url = f"sqlite:///{tmp_path / 'hq.sqlite'}"
    hq = HqDb(url)
    events = [{**ev(i), "at": f"2026-12-01T10:00:0{i // 4}Z"} for i in range(10)]  # ties
    hq.store_batch("p", "s1", "k1", events[::-1])
    auth.add_user(hq.conn, "owner", "owner password 1", "owner")
    hq.close()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(hq.engine, lambda: True), host="127.0.0.1",
                                           port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        page = opener.open(base + "/login", timeout=10).read().decode()
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        opener.open(base + "/login", urllib.parse.urlencode(
            {"user": "owner", "password": "owner password 1", "csrf": csrf}).encode(), timeout=10)
        lines = opener.open(base + "/redemptions.csv", timeout=10).read().decode().splitlines()
    finally:
        server.should_exit = True
    assert lines[0].startswith("id,at,")
    ids = [line.split(",")[0] for line in lines[1:]]
    assert ids == sorted((e["id"] for e in events), key=lambda i: (events[int(i[1:])]["at"], i))
    assert len(ids) == 10
