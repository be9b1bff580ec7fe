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
"""

import statistics

from kiosk.core import timefmt
from kiosk.core.verdict import Verdict

REASONS = tuple(v.value for v in Verdict if not v.ok)  # already_redeemed ... no_list
KEYPAD = "keypad"


def build(conn, stores: tuple[str, ...] | None = None, since: str = "") -> dict:
    """``stores=None``: every store; otherwise only these (a manager's)."""
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
    totals = _empty("")
    for store, s in per.items():
        s["confirms"] = len(waits.get(store, []))
        s["median_confirm_s"] = _median(waits.get(store, []))
        s["typed_share"] = _share(s["typed"], s["verdicts"])
        for k in ("verdicts", "typed", "scanned", "timeouts", "confirms"):
            totals[k] += s[k]
        for reason in REASONS:
            totals["refusals"][reason] += s["refusals"][reason]
    everything = [w for store in per for w in waits.get(store, [])]
    totals["median_confirm_s"] = _median(everything)
    totals["typed_share"] = _share(totals["typed"], totals["verdicts"])
    return {"since": since or None, "stores": [per[k] for k in sorted(per)], "totals": totals}


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
