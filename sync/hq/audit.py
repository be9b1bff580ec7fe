"""HQ's audit log: who did what, when (logins, resolutions, tokens, webhooks, users).

One row per action in the table ``audit``; the dashboard's Audit page lists them and
``detail`` is a short JSON object. Writes happen in the caller's transaction when it
has one, so an action and its audit row are stored together.
"""

import json
from datetime import UTC, datetime

from sync.hq.engine import Conn


def record(conn: Conn, actor: str, action: str, **detail) -> None:
    conn.execute("INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)",
                 (datetime.now(UTC).isoformat(timespec="seconds"), actor, action,
                  json.dumps(detail, ensure_ascii=False, default=str) if detail else None))


def latest(conn: Conn, limit: int = 200) -> list[dict]:
    rows = conn.rows("SELECT at, actor, action, detail FROM audit ORDER BY at DESC LIMIT ?",
                     (limit,))
    for r in rows:
        r["detail"] = json.loads(r["detail"]) if r["detail"] else {}
    return rows
