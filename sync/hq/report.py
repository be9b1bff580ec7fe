"""``kiosk-hq report --db hq.sqlite``: redemptions per store, device, reward and day.

``redeemed`` counts redemptions, ``voided`` those of them later undone, ``net`` the
difference. Conflicts are listed after the table (``--csv``: a second CSV block
after one blank line; ``--json``: under ``conflicts``).
"""

import csv
import json
import sys

from kiosk.core import timefmt
from sync.hq import friction
from sync.hq.db import HqDb
from sync.hq.engine import db_errors, open_engine

ROWS_SQL = """
SELECT store, device, coalesce(reward_id, '') AS reward_id, substr(at, 1, 10) AS day,
       count(*) AS redeemed,
       sum(CASE WHEN voided_by IS NOT NULL THEN 1 ELSE 0 END) AS voided
FROM events WHERE at >= ? AND kind = 'redeem'
GROUP BY store, device, reward_id, day ORDER BY day, store, device, reward_id
"""
CONFLICTS_SQL = """
SELECT c.kind, c.event_id, c.store, c.device, c.code_hash, e.at, c.detail, c.flagged_at
FROM conflicts c LEFT JOIN events e ON e.id = c.event_id
WHERE coalesce(e.at, c.flagged_at) >= ? ORDER BY c.flagged_at
"""


def register(sub) -> None:
    p = sub.add_parser("report", help="redemptions per store, device, reward and day; conflicts")
    p.add_argument("--db", required=True, help="sqlite:///PATH, a path, or postgresql://...")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true")
    fmt.add_argument("--json", action="store_true")
    p.add_argument("--since", help="only events at or after this date (YYYY-MM-DD or RFC 3339)")
    p.add_argument("--friction", action="store_true",
                   help="the friction report instead: refusals by reason, unconfirmed timeouts, "
                        "typed vs scanned, median seconds from ready to confirm, per store")
    p.set_defaults(handler=cmd_report)


def build(db: HqDb, since: str | None = None) -> dict:
    start = timefmt.format(timefmt.parse(since)) if since else ""
    rows = db.rows(ROWS_SQL, [start])
    for row in rows:
        row["net"] = row["redeemed"] - row["voided"]
    conflicts = db.rows(CONFLICTS_SQL, [start])
    for c in conflicts:
        c["detail"] = json.loads(c["detail"]) if c["detail"] else None
    return {"since": start or None, "rows": rows, "conflicts": conflicts,
            "totals": {"redeemed": sum(r["redeemed"] for r in rows),
                       "voided": sum(r["voided"] for r in rows),
                       "conflicts": len(conflicts)}}


def write_text(report: dict, out) -> None:
    head = ("day", "store", "device", "reward_id", "redeemed", "voided", "net")
    table = [head] + [tuple(str(r[k]) for k in head) for r in report["rows"]]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")
    t = report["totals"]
    out.write(f"total: {t['redeemed']} redeemed, {t['voided']} voided, {t['conflicts']} conflict(s)\n")
    for c in report["conflicts"]:
        out.write(f"CONFLICT {c['kind']}: event {c['event_id']} at {c['store']}/{c['device']} "
                  f"({c['at'] or '?'}) code {c['code_hash'][:12]}... {json.dumps(c['detail'])}\n")


def write_csv(report: dict, out) -> None:
    writer = csv.writer(out)
    writer.writerow(["day", "store", "device", "reward_id", "redeemed", "voided", "net"])
    for r in report["rows"]:
        writer.writerow([r["day"], r["store"], r["device"], r["reward_id"], r["redeemed"],
                         r["voided"], r["net"]])
    if report["conflicts"]:
        out.write("\n")
        writer.writerow(["conflict", "event_id", "store", "device", "code_hash", "at", "detail"])
        for c in report["conflicts"]:
            writer.writerow([c["kind"], c["event_id"], c["store"], c["device"], c["code_hash"],
                             c["at"], json.dumps(c["detail"])])


def cmd_report(args) -> int:
    try:
        engine = open_engine(args.db)
    except ValueError as exc:
        print(f"kiosk-hq: report: {exc}", file=sys.stderr)
        return 2
    if engine.kind == "sqlite" and not engine.path.exists():
        print(f"kiosk-hq: report: no database at {engine.path}", file=sys.stderr)
        return 1
    try:
        db = HqDb(engine)
    except db_errors() as exc:
        print(f"kiosk-hq: report: {exc}", file=sys.stderr)
        return 1
    try:
        report = friction.build(db.conn, None, args.since or "") if args.friction else \
            build(db, args.since)
    except ValueError:
        print(f"kiosk-hq: report: --since {args.since!r} is not a date (use 2026-11-01)",
              file=sys.stderr)
        return 2
    finally:
        db.close()
    if args.json:
        json.dump(report, sys.stdout, ensure_ascii=False, indent=1)
        sys.stdout.write("\n")
    elif args.friction:
        (friction.write_csv if args.csv else friction.write_text)(report, sys.stdout)
    elif args.csv:
        write_csv(report, sys.stdout)
    else:
        write_text(report, sys.stdout)
    return 0
