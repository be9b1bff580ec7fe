"""Dashboard and API timings of ``kiosk-hq serve`` with many events in PostgreSQL.

    python bench/hq_pages.py [--events 10000000] [--repeat 7]

A throwaway PostgreSQL cluster (``sync.testing_pg``) gets the HQ schema (every
migration) and ``--events`` redemptions written by ``generate_series`` in the
database itself (1,000 devices in 50 stores, four rewards, spread over a year, 1 %
voided), ``--activity`` counter activity rows (the friction report's input: scan,
verdict, confirm / timeout / cancel per session, through the roll-up's triggers), a
heartbeat per device and a few hundred conflicts. Then the real FastAPI app
(``sync.hq.web.make_app``) serves on 127.0.0.1 under uvicorn, an owner signs in, and
each page and API call is requested ``--repeat`` times over HTTP; printed: median and
p95 milliseconds per page (goal, issue 17: under 200 ms with 10M events).
"""

import argparse
import http.cookiejar
import re
import statistics
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sync import testing, testing_pg  # noqa: E402
from sync.hq import auth  # noqa: E402
from sync.hq.db import HqDb  # noqa: E402

CHUNK = 1_000_000
DAYS = 365

FILL_EVENTS = """
INSERT INTO events (id, program, store, device, seq, kind, voids, code_hash, reward_id,
                    list_version, at, clock, staff, received_at, voided_by)
SELECT 'e' || lpad(g::text, 10, '0'), 'cafe', 's' || lpad((g %% 50)::text, 2, '0'),
       'k' || lpad((g %% 1000)::text, 4, '0'), g / 1000, 'redeem', NULL,
       md5(g::text) || md5((g + 7)::text),
       (ARRAY['coffee', 'tea', 'cake', 'ten-off'])[g %% 4 + 1], 1, stamp, 'synced', NULL, stamp,
       CASE WHEN g %% 100 = 0 THEN 'v' || g END
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g,
     LATERAL (SELECT to_char(timestamp '2026-01-01' + (g * %(step)s) * interval '1 second',
                             'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS stamp) AS t
"""
# Counter sessions as a kiosk's audit trail sends them: a scan, its verdict (half
# ready, the rest refused for one of four reasons; every 9th typed on the keypad), then
# for a ready code its confirm 1.5-26.5 s later (every 10th times out instead) and for
# a refused one a cancel; 1,000 devices in 50 stores, each device's n rising with time.
FILL_ACTIVITY = """
INSERT INTO activity (program, store, device, n, at, kind, source, verdict, reward_id,
                      code_hash, received_at)
SELECT 'cafe', 's' || lpad((s %% 50)::text, 2, '0'), 'k' || lpad((s %% 1000)::text, 4, '0'),
       3 * s + k, stamp,
       CASE k WHEN 0 THEN 'scan' WHEN 1 THEN 'verdict'
              ELSE CASE WHEN verdict <> 'ready' THEN 'cancel'
                        WHEN s %% 10 = 0 THEN 'timeout' ELSE 'confirm' END END,
       CASE WHEN k < 2 THEN CASE WHEN s %% 9 = 0 THEN 'keypad' ELSE 'camera' END END,
       CASE WHEN k = 1 THEN verdict END, 'coffee', md5(s::text), stamp
FROM generate_series(0, %(n)s::bigint / 3 - 1) AS s,
     LATERAL (SELECT (ARRAY['ready', 'ready', 'ready', 'ready', 'already_redeemed', 'expired',
                            'unknown', 'wrong_store'])[s %% 8 + 1] AS verdict) AS v,
     generate_series(0, 2) AS k,
     LATERAL (SELECT to_char(timestamp '2026-01-01' + (s * %(step)s) * interval '1 second'
                             + (CASE k WHEN 0 THEN 0 WHEN 1 THEN 0.2
                                ELSE 1.5 + (s * 7919 %% 250) / 10.0 + (s %% 1000) / 1000.0 END)
                               * interval '1 second',
                             'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS stamp) AS t
"""
FILL_DEVICES = """
INSERT INTO devices (program, store, device, state, list_version, outbox, prev_outbox,
                     software, status, last_seen_at, offline_at)
SELECT 'cafe', 's' || lpad((g %% 50)::text, 2, '0'), 'k' || lpad(g::text, 4, '0'),
       CASE WHEN g %% 20 = 0 THEN 'offline' ELSE 'online' END, 1 + (g %% 30 = 0)::int, g %% 7, 0,
       '1.0', '{}', '2026-12-01T10:00:00Z', NULL
FROM generate_series(0, 999) AS g
"""
FILL_CONFLICTS = """
INSERT INTO conflicts (event_id, kind, program, store, device, code_hash, detail, flagged_at)
SELECT 'e' || lpad((g * 997)::text, 10, '0'), 'over_redeemed', 'cafe',
       's' || lpad((g %% 50)::text, 2, '0'), 'k' || lpad((g %% 1000)::text, 4, '0'),
       md5(g::text), '{"max_uses": 1}', '2026-11-30T10:00:00Z'
FROM generate_series(1, 300) AS g
"""


def fill(url: str, events: int, activity: int) -> None:
    import psycopg

    step = DAYS * 86400 / max(events, 1)
    with psycopg.connect(url, autocommit=True) as conn:
        t0 = time.monotonic()
        conn.execute("SET maintenance_work_mem = '512MB'")
        # the indexes are built once at the end (a sorted build, much faster than
        # millions of random inserts), from the definitions the migrations made
        constraints = conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'events'::regclass AND contype IN ('p', 'u')").fetchall()
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'events' AND "
            "indexname NOT IN (SELECT conname FROM pg_constraint)").fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        for name, _ in constraints:
            conn.execute(f'ALTER TABLE events DROP CONSTRAINT "{name}"')
        for lo in range(1, events + 1, CHUNK):
            hi = min(events, lo + CHUNK - 1)
            conn.execute(FILL_EVENTS, {"lo": lo, "hi": hi, "step": step})
            print(f"  filled {hi:,} events ({time.monotonic() - t0:.0f} s)", flush=True)
        for name, definition in constraints:
            conn.execute(f'ALTER TABLE events ADD CONSTRAINT "{name}" {definition}')
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute("SELECT setval(pg_get_serial_sequence('events', 'n'), "
                     "(SELECT coalesce(max(n), 1) FROM events))")
        print(f"  indexed ({time.monotonic() - t0:.0f} s)", flush=True)
        t1 = time.monotonic()
        conn.execute(FILL_ACTIVITY, {"n": activity, "step": DAYS * 86400 * 3 / max(activity, 1)})
        rollup = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("friction_daily", "friction_waits")]
        print(f"  filled {activity:,} activity rows through the friction triggers in "
              f"{time.monotonic() - t1:.0f} s: roll-up {rollup[0]:,} + {rollup[1]:,} rows",
              flush=True)
        conn.execute(FILL_DEVICES, {})
        conn.execute(FILL_CONFLICTS, {})
        conn.execute("VACUUM ANALYZE")
        print(f"  filled {activity:,} activity rows, 1,000 devices, 300 conflicts; vacuumed "
              f"({time.monotonic() - t0:.0f} s in all)", flush=True)


class Browser:
    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
            _NoRedirect())

    def get(self, path: str, headers: dict | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with self.opener.open(req, timeout=120) as r:
                return r.status, r.read(65536)  # the first page of a long answer
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def login(self, user: str, password: str) -> None:
        _, page = self.get("/login")
        csrf = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
        data = urllib.parse.urlencode({"user": user, "password": password, "csrf": csrf}).encode()
        req = urllib.request.Request(self.base + "/login", data=data)
        try:
            self.opener.open(req, timeout=30)
        except urllib.error.HTTPError as e:
            if e.code != 303:
                raise


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def serve(url: str) -> tuple[str, object]:
    import uvicorn

    from sync.hq.engine import open_engine
    from sync.hq.web import make_app

    port = testing.free_port()
    app = make_app(open_engine(url), lambda: True)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def check_friction(url: str) -> None:
    """The roll-up's answer against the computation over every activity row."""
    from sync.hq import friction
    from sync.hq.engine import open_engine

    conn = open_engine(url).connect()
    try:
        t = time.perf_counter()
        rolled = friction.build(conn)
        t_rolled = time.perf_counter() - t
        t = time.perf_counter()
        raw = friction.from_rows(conn)
        t_raw = time.perf_counter() - t
    finally:
        conn.close()
    same = [{**s, "median_confirm_s": None} for s in [*rolled["stores"], rolled["totals"]]] == \
        [{**s, "median_confirm_s": None} for s in [*raw["stores"], raw["totals"]]]
    worst = max(abs(a["median_confirm_s"] - b["median_confirm_s"])
                for a, b in zip([*rolled["stores"], rolled["totals"]], [*raw["stores"], raw["totals"]],
                                strict=True) if a["median_confirm_s"] is not None)
    print(f"  friction from the roll-up {1000 * t_rolled:.0f} ms, from every activity row "
          f"{1000 * t_raw:.0f} ms; counts equal: {same}; largest median difference "
          f"{worst:.1f} s (total median {rolled['totals']['median_confirm_s']} s, "
          f"{rolled['totals']['confirms']:,} confirms)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--activity", type=int, help="activity rows (default: events / 10)")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    activity = args.activity if args.activity is not None else args.events // 10
    pg = testing_pg.Postgres().start()
    server = None
    try:
        url = pg.create_db("pages")
        db = HqDb(url)  # every migration, before the rows
        auth.add_user(db.conn, "owner", "bench owner password", "owner")
        token = auth.create_token(db.conn, "bench")
        db.close()
        print(f"filling {args.events:,} events into a throwaway PostgreSQL ...", flush=True)
        fill(url, args.events, activity)
        base, server = serve(url)
        browser = Browser(base)
        browser.login("owner", "bench owner password")
        api = {"Authorization": f"Bearer {token}"}
        mid = args.events // 2
        pages = [
            ("redemptions (all)", "/", None),
            ("redemptions, one store", "/?store=s07", None),
            ("redemptions, one month", "/?since=2026-06-01&until=2026-06-30", None),
            ("redemptions, store + month", "/?store=s07&since=2026-06-01&until=2026-06-30", None),
            ("redemptions, search id", f"/?q=e{mid:010d}", None),
            ("redemptions, search code", "/?q=c4ca4238", None),
            ("fleet", "/fleet", None),
            ("conflicts", "/conflicts", None),
            ("friction", "/friction", None),
            ("friction, one month", "/friction?since=2026-06-01", None),
            ("CSV export, first 64 KB", "/redemptions.csv", None),
            ("CSV export one store, first 64 KB", "/redemptions.csv?store=s07", None),
            ("API redemptions since=0", "/api/v1/redemptions?since=0", api),
            ("API redemptions since=middle", f"/api/v1/redemptions?since={mid}", api),
            ("API devices", "/api/v1/devices", api),
            ("API friction", "/api/v1/friction", api),
        ]
        print(f"\n{args.events:,} events, {activity:,} activity rows; "
              f"{args.repeat} requests per page over HTTP on 127.0.0.1")
        print(f"  {'page':36} {'median ms':>10} {'p95 ms':>8}  status")
        for name, path, headers in pages:
            times, status = [], None
            for _ in range(args.repeat):
                t = time.perf_counter()
                status, _body = browser.get(path, headers)
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
            print(f"  {name:36} {statistics.median(times):10.0f} {p95:8.0f}  {status}", flush=True)
        import os

        print(f"  load average (1 min) {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
        check_friction(url)
        return 0
    finally:
        if server is not None:
            server.should_exit = True
            time.sleep(0.5)
        pg.stop()


if __name__ == "__main__":
    sys.exit(main())
