"""What the friction roll-up (migration 0008) costs the collector storing activity.

    python bench/hq_activity_ingest.py [--devices 60] [--sessions 150]

Stores the same counter trails (scan, verdict, then confirm / timeout / cancel per
session, in the sender's batches of 200 rows, :func:`sync.hq.activity.store_rows`)
into fresh HQ databases with and without the roll-up's triggers, on SQLite and on a
throwaway PostgreSQL (``sync.testing_pg``); prints rows/s and ms per batch.
"""

import argparse
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kiosk.core import timefmt  # noqa: E402
from sync import testing_pg  # noqa: E402
from sync.activity import BATCH_SIZE  # noqa: E402
from sync.hq import activity, friction  # noqa: E402
from sync.hq.db import MIGRATIONS  # noqa: E402
from sync.hq.engine import open_engine  # noqa: E402


def trail(rng: random.Random, device: str, sessions: int) -> list[dict]:
    rows, t = [], datetime(2026, 11, 1, 8, tzinfo=UTC)
    for s in range(sessions):
        code = f"{device}-{s}"
        verdict = rng.choice(["ready"] * 4 + ["already_redeemed", "expired", "unknown", "wrong_store"])
        source = "keypad" if rng.random() < 0.1 else "camera"
        rows.append({"kind": "scan", "source": source, "code_hash": code, "at": t})
        rows.append({"kind": "verdict", "source": source, "verdict": verdict, "code_hash": code,
                     "at": t + timedelta(milliseconds=200)})
        end = "cancel" if verdict != "ready" else "timeout" if rng.random() < 0.1 else "confirm"
        rows.append({"kind": end, "code_hash": code,
                     "at": t + timedelta(milliseconds=rng.randrange(1500, 26_500))})
        t += timedelta(minutes=rng.randrange(1, 30))
    return [{"n": n, **r, "at": timefmt.format(r["at"])} for n, r in enumerate(rows, 1)]


def run(url: str, rollup: bool, devices: int, sessions: int) -> tuple[int, int, float]:
    conn = open_engine(url).connect()
    try:
        conn.migrate([m for m in MIGRATIONS if rollup or m.name != friction.MIGRATION.name])
        rng = random.Random(1)
        trails = [(f"s{d % 10:02d}", f"k{d:04d}", trail(rng, f"k{d:04d}", sessions))
                  for d in range(devices)]
        rows = batches = 0
        t = time.perf_counter()
        for store, device, rows_of in trails:
            for i in range(0, len(rows_of), BATCH_SIZE):
                activity.store_rows(conn, "cafe", store, device, rows_of[i:i + BATCH_SIZE])
                rows += len(rows_of[i:i + BATCH_SIZE])
                batches += 1
        return rows, batches, time.perf_counter() - t
    finally:
        conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=60)
    ap.add_argument("--sessions", type=int, default=150, help="counter sessions per device")
    args = ap.parse_args()
    pg = testing_pg.Postgres().start()
    tmp = tempfile.TemporaryDirectory()
    try:
        print(f"{'engine':12} {'triggers':10} {'rows':>8} {'rows/s':>9} {'ms/batch':>9}")
        for kind in ("sqlite", "postgresql"):
            for rollup in (False, True):
                url = (f"sqlite:///{tmp.name}/hq{int(rollup)}.sqlite" if kind == "sqlite"
                       else pg.create_db(f"ingest{int(rollup)}"))
                rows, batches, seconds = run(url, rollup, args.devices, args.sessions)
                print(f"{kind:12} {'roll-up' if rollup else 'none':10} {rows:8,} "
                      f"{rows / seconds:9,.0f} {1000 * seconds / batches:9.1f}", flush=True)
        print(f"load average (1 min) {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
        return 0
    finally:
        pg.stop()
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
