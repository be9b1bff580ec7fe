"""The friction report: where the counter flow hurts, per store, from the counters'
activity rows (:mod:`sync.hq.activity`).

* ``refusals``: refused verdicts by reason (the kiosk's verdicts other than ready
  and redeemed);
* ``timeouts``: ready verdicts that timed out unconfirmed (audit kind ``timeout``);
* ``typed`` / ``scanned``: verdicts of codes staff typed on the keypad (source
  ``keypad``) and of codes read by the camera or a scanner (any other source);
* ``median_confirm_s``: the median seconds from a ready verdict to its confirm,
  paired by device and code hash (the first confirm after the verdict).

Shown on the dashboard's ``/friction`` page and by ``kiosk-hq report --friction``.

Read from a roll-up (migration ``0008-friction-rollup``) that triggers keep in the
writer's own transaction, so the report sums a few rows per store and day instead of
reading every activity row (9.5 s at 1M activity rows before, bench/hq_pages.py):

* ``friction_daily``: activity rows counted per program, store, day, kind, verdict
  and typed (keypad) - the counts are exact;
* ``friction_waits``: a histogram of ready-to-confirm waits per program, store and
  day of the ready verdict, in 0.1 s buckets (the wait rounded to the nearest 0.1 s).
  The median of the buckets is within 0.05 s of the median of the exact waits, so
  the reported median (rounded to 0.1 s) differs from the exact one by at most 0.1 s.
  A confirm pairs with the latest ready verdict, timeout or confirm of the same
  program, store, device and code before it (by ``n``) if that row is a ready
  verdict; rows reach HQ in ``n`` order (the sender keeps one batch in flight), so a
  pair is found when its confirm is stored.

A ``since`` at midnight UTC (a date: what the page offers) is answered from the
roll-up; a ``since`` with a time of day reads the raw rows (:func:`from_rows`).
"""

import statistics

from kiosk.core import timefmt
from kiosk.core.verdict import Verdict
from sync.hq.engine import Migration

REASONS = tuple(v.value for v in Verdict if not v.ok)  # already_redeemed ... no_list
KEYPAD = "keypad"
KINDS = ("verdict", "timeout", "confirm")

_DAILY = """CREATE TABLE friction_daily (
    program TEXT NOT NULL, store TEXT NOT NULL, day TEXT NOT NULL, kind TEXT NOT NULL,
    verdict TEXT NOT NULL, typed INTEGER NOT NULL, n BIGINT NOT NULL,
    PRIMARY KEY (program, store, day, kind, verdict, typed))"""
_WAITS = """CREATE TABLE friction_waits (
    program TEXT NOT NULL, store TEXT NOT NULL, day TEXT NOT NULL, decis BIGINT NOT NULL,
    n BIGINT NOT NULL, PRIMARY KEY (program, store, day, decis))"""
# the rows a confirm pairs against: the latest of these before it, same device and code
_PAIRS_INDEX = "CREATE INDEX activity_code_n ON activity (program, store, device, code_hash, n)"
_RELEVANT = "(kind IN ('timeout', 'confirm') OR (kind = 'verdict' AND verdict = 'ready'))"
_COUNT_COLUMNS = ("program, store, substr(at, 1, 10), kind, "
                  "CASE WHEN kind = 'verdict' THEN coalesce(verdict, '') ELSE '' END, "
                  "CASE WHEN kind = 'verdict' AND source = 'keypad' THEN 1 ELSE 0 END")
_DAILY_FILL = f"""INSERT INTO friction_daily (program, store, day, kind, verdict, typed, n)
    SELECT {_COUNT_COLUMNS}, count(*) FROM activity
    WHERE kind IN ('verdict', 'timeout', 'confirm') GROUP BY 1, 2, 3, 4, 5, 6"""


def _waits_fill(seconds: str) -> str:
    """Backfill: each confirm whose previous relevant row (same device and code) is a
    ready verdict; ``seconds`` is the engine's ``confirm at - verdict at`` in seconds."""
    return f"""INSERT INTO friction_waits (program, store, day, decis, n)
    SELECT program, store, substr(prev_at, 1, 10), round({seconds.format(c="at", v="prev_at")} * 10),
           count(*)
    FROM (SELECT program, store, kind, at,
                 lag(kind) OVER w AS prev_kind, lag(at) OVER w AS prev_at
          FROM activity WHERE code_hash <> '' AND {_RELEVANT}
          WINDOW w AS (PARTITION BY program, store, device, code_hash ORDER BY n)) AS p
    WHERE kind = 'confirm' AND prev_kind = 'verdict' AND {seconds.format(c="at", v="prev_at")} >= 0
    GROUP BY 1, 2, 3, 4"""


_SQLITE_SECONDS = "((julianday({c}) - julianday({v})) * 86400)"
_PG_SECONDS = "extract(epoch FROM ({c})::timestamptz - ({v})::timestamptz)"

MIGRATION = Migration(
    "0008-friction-rollup",
    sqlite=[_DAILY, _WAITS, _PAIRS_INDEX, _DAILY_FILL, _waits_fill(_SQLITE_SECONDS),
            """CREATE TRIGGER activity_friction_count AFTER INSERT ON activity
WHEN NEW.kind IN ('verdict', 'timeout', 'confirm')
BEGIN
    INSERT INTO friction_daily (program, store, day, kind, verdict, typed, n)
    VALUES (NEW.program, NEW.store, substr(NEW.at, 1, 10), NEW.kind,
            CASE WHEN NEW.kind = 'verdict' THEN coalesce(NEW.verdict, '') ELSE '' END,
            CASE WHEN NEW.kind = 'verdict' AND NEW.source = 'keypad' THEN 1 ELSE 0 END, 1)
    ON CONFLICT (program, store, day, kind, verdict, typed) DO UPDATE SET n = n + 1;
END""",
            f"""CREATE TRIGGER activity_friction_wait AFTER INSERT ON activity
WHEN NEW.kind = 'confirm' AND NEW.code_hash <> ''
BEGIN
    INSERT INTO friction_waits (program, store, day, decis, n)
    SELECT NEW.program, NEW.store, substr(v.at, 1, 10),
           round({_SQLITE_SECONDS.format(c="NEW.at", v="v.at")} * 10), 1
    FROM (SELECT kind, at FROM activity
          WHERE program = NEW.program AND store = NEW.store AND device = NEW.device
            AND code_hash = NEW.code_hash AND n < NEW.n AND {_RELEVANT}
          ORDER BY n DESC LIMIT 1) AS v
    WHERE v.kind = 'verdict' AND {_SQLITE_SECONDS.format(c="NEW.at", v="v.at")} >= 0
    ON CONFLICT (program, store, day, decis) DO UPDATE SET n = n + 1;
END"""],
    postgresql=[_DAILY, _WAITS, _PAIRS_INDEX, _DAILY_FILL, _waits_fill(_PG_SECONDS),
                # once per INSERT statement (a device's batch), in key order
                f"""CREATE FUNCTION friction_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO friction_daily AS f (program, store, day, kind, verdict, typed, n)
    SELECT {_COUNT_COLUMNS}, count(*) FROM new_rows
    WHERE kind IN ('verdict', 'timeout', 'confirm')
    GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (program, store, day, kind, verdict, typed) DO UPDATE SET n = f.n + excluded.n;
    INSERT INTO friction_waits AS w (program, store, day, decis, n)
    SELECT c.program, c.store, substr(v.at, 1, 10),
           round({_PG_SECONDS.format(c="c.at", v="v.at")} * 10), count(*)
    FROM new_rows c CROSS JOIN LATERAL (
        SELECT a.kind, a.at FROM activity a
        WHERE a.program = c.program AND a.store = c.store AND a.device = c.device
          AND a.code_hash = c.code_hash AND a.n < c.n
          AND (a.kind IN ('timeout', 'confirm') OR (a.kind = 'verdict' AND a.verdict = 'ready'))
        ORDER BY a.n DESC LIMIT 1) AS v
    WHERE c.kind = 'confirm' AND c.code_hash <> '' AND v.kind = 'verdict'
      AND {_PG_SECONDS.format(c="c.at", v="v.at")} >= 0
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (program, store, day, decis) DO UPDATE SET n = w.n + excluded.n;
    RETURN NULL;
END $$""",
                """CREATE TRIGGER activity_friction AFTER INSERT ON activity
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION friction_on_insert()"""],
)


def build(conn, stores: tuple[str, ...] | None = None, since: str = "") -> dict:
    """``stores=None``: every store; otherwise only these (a manager's). ``since``: a
    date or an RFC 3339 time (ValueError if neither)."""
    start = timefmt.format(timefmt.parse(since)) if since else ""
    if stores is not None and not stores:
        return {"since": since or None, "stores": [], "totals": _empty("")}
    if start and not start.endswith("T00:00:00.000Z"):
        return from_rows(conn, stores, since)
    where, params = ["day >= ?"], [start[:10]]
    if stores is not None:
        where.append(f"store IN ({', '.join('?' for _ in stores)})")
        params += list(stores)
    counts = conn.rows(f"SELECT store, kind, verdict, typed, sum(n) AS n FROM friction_daily "
                       f"WHERE {' AND '.join(where)} GROUP BY store, kind, verdict, typed", params)
    buckets = conn.rows(f"SELECT store, decis, sum(n) AS n FROM friction_waits "
                        f"WHERE {' AND '.join(where)} GROUP BY store, decis", params)
    per: dict[str, dict] = {}
    for r in counts:
        s, n = per.setdefault(r["store"], _empty(r["store"])), int(r["n"])
        if r["kind"] == "verdict":
            s["verdicts"] += n
            s["typed" if r["typed"] else "scanned"] += n
            if r["verdict"] in REASONS:
                s["refusals"][r["verdict"]] += n
        elif r["kind"] == "timeout":
            s["timeouts"] += n
    hist: dict[str, dict[int, int]] = {}
    for r in buckets:
        per.setdefault(r["store"], _empty(r["store"]))
        hist.setdefault(r["store"], {})[int(r["decis"])] = int(r["n"])
    everything: dict[int, int] = {}
    for store_hist in hist.values():
        for decis, n in store_hist.items():
            everything[decis] = everything.get(decis, 0) + n
    waits = {store: (sum(h.values()), _bucket_median(h)) for store, h in hist.items()}
    return _finish(per, waits, (sum(everything.values()), _bucket_median(everything)), since)


def _bucket_median(hist: dict[int, int]) -> float | None:
    """The median of a histogram of 0.1 s buckets (as :func:`statistics.median`: the
    mean of the two middle values when the count is even), rounded to 0.1 s."""
    total = sum(hist.values())
    if not total:
        return None
    lo_i, hi_i = (total - 1) // 2, total // 2
    lo = hi = None
    seen = 0
    for decis in sorted(hist):
        seen += hist[decis]
        if lo is None and seen > lo_i:
            lo = decis
        if seen > hi_i:
            hi = decis
            break
    return round((lo + hi) / 20, 1)


def _finish(per: dict[str, dict], waits: dict[str, tuple[int, float | None]],
            total_waits: tuple[int, float | None], since: str) -> dict:
    """Shares, confirm counts, medians and totals; ``waits``: store -> (confirms, median)."""
    totals = _empty("")
    for store, s in per.items():
        s["confirms"], s["median_confirm_s"] = waits.get(store, (0, None))
        s["typed_share"] = _share(s["typed"], s["verdicts"])
        for k in ("verdicts", "typed", "scanned", "timeouts", "confirms"):
            totals[k] += s[k]
        for reason in REASONS:
            totals["refusals"][reason] += s["refusals"][reason]
    totals["median_confirm_s"] = total_waits[1]
    totals["typed_share"] = _share(totals["typed"], totals["verdicts"])
    return {"since": since or None, "stores": [per[k] for k in sorted(per)], "totals": totals}


def from_rows(conn, stores: tuple[str, ...] | None = None, since: str = "") -> dict:
    """The report computed from every activity row (the roll-up's reference; used for a
    ``since`` with a time of day). The medians here are exact."""
    where, params = ["kind IN ('verdict', 'timeout', 'confirm')"], []
    if since:
        where.append("at >= ?")
        params.append(timefmt.format(timefmt.parse(since)))
    if stores is not None:
        if not stores:
            return {"since": since or None, "stores": [], "totals": _empty("")}
        where.append(f"store IN ({', '.join('?' for _ in stores)})")
        params += list(stores)
    rows = conn.rows(f"SELECT store, device, n, at, kind, source, verdict, code_hash "
                     f"FROM activity WHERE {' AND '.join(where)} ORDER BY store, device, n", params)
    per: dict[str, dict] = {}
    waits: dict[str, list[float]] = {}
    ready: dict[tuple[str, str], str] = {}  # (device, code_hash) -> at of its ready verdict
    for r in rows:
        s = per.setdefault(r["store"], _empty(r["store"]))
        key = (r["device"], r["code_hash"] or "")
        if r["kind"] == "verdict":
            s["verdicts"] += 1
            s["typed" if r["source"] == KEYPAD else "scanned"] += 1
            if r["verdict"] in REASONS:
                s["refusals"][r["verdict"]] += 1
            elif r["verdict"] == "ready" and r["code_hash"]:
                ready[key] = r["at"]
        elif r["kind"] == "timeout":
            s["timeouts"] += 1
            ready.pop(key, None)
        elif r["kind"] == "confirm" and key in ready:
            seconds = (timefmt.parse(r["at"]) - timefmt.parse(ready.pop(key))).total_seconds()
            if seconds >= 0:
                waits.setdefault(r["store"], []).append(seconds)
    everything = [w for store in per for w in waits.get(store, [])]
    return _finish(per, {store: (len(w), _median(w)) for store, w in waits.items()},
                   (len(everything), _median(everything)), since)




def _empty(store: str) -> dict:
    return {"store": store, "verdicts": 0, "typed": 0, "scanned": 0, "timeouts": 0,
            "confirms": 0, "refusals": dict.fromkeys(REASONS, 0), "median_confirm_s": None,
            "typed_share": None}


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 3) if whole else None


def write_text(report: dict, out) -> None:
    head = ("store", "verdicts", "typed", "typed%", "timeouts", "median_confirm_s", *REASONS)
    table = [head]
    for s in [*report["stores"], {**report["totals"], "store": "total"}]:
        share = "" if s["typed_share"] is None else f"{100 * s['typed_share']:.0f}"
        median = "" if s["median_confirm_s"] is None else f"{s['median_confirm_s']:.1f}"
        table.append((s["store"], str(s["verdicts"]), str(s["typed"]), share, str(s["timeouts"]),
                      median, *(str(s["refusals"][r]) for r in REASONS)))
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def write_csv(report: dict, out) -> None:
    import csv

    writer = csv.writer(out)
    writer.writerow(["store", "verdicts", "typed", "scanned", "typed_share", "timeouts",
                     "confirms", "median_confirm_s", *REASONS])
    for s in report["stores"]:
        writer.writerow([s["store"], s["verdicts"], s["typed"], s["scanned"],
                         "" if s["typed_share"] is None else s["typed_share"], s["timeouts"],
                         s["confirms"], "" if s["median_confirm_s"] is None else s["median_confirm_s"],
                         *(s["refusals"][r] for r in REASONS)])
