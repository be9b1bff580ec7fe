"""The integration API (documented at ``/api/openapi.json``; see docs/hq.md)."""

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from sync import protocol
from sync.hq import fleet, friction
from sync.hq.db import events_after
from sync.hq.engine import db_errors
from sync.hq.web.deps import Db, Token

API_FIELDS = ("program", *protocol.EVENT_FIELDS, "received_at", "voided_by")
MAX_PAGE = 5000
router = APIRouter()


@router.get("/healthz", summary="Database and broker connection are up")
def healthz(request: Request):
    engine = request.app.state.engine
    try:
        c = engine.connect()
        try:
            c.execute("SELECT 1").fetchone()
        finally:
            c.close()
        db = "ok"
    except db_errors() as exc:
        db = f"error: {exc}"
    broker = "connected" if request.app.state.broker_up() else "disconnected"
    ok = db == "ok" and broker == "connected"
    return JSONResponse({"db": db, "broker": broker}, status_code=200 if ok else 503)


@router.get("/api/v1/redemptions", summary="Redemption and void events after a cursor")
def redemptions(request: Request, c: Db, _token: Token,
                since: str = Query("0", description="cursor: the previous page's next"),
                limit: int = Query(500, ge=1, le=MAX_PAGE)):
    if not since.isdigit():
        raise HTTPException(400, "since must be a cursor returned as next (digits)")
    rows = events_after(c, int(since), limit, API_FIELDS)
    nxt = str(rows[-1]["cursor"]) if rows else since
    return {"events": [{k: r[k] for k in API_FIELDS} for r in rows], "next": nxt}


@router.get("/api/v1/friction", summary="The friction report per store: refusals by reason, "
            "unconfirmed timeouts, typed vs scanned, median seconds from ready to confirm")
def friction_report(c: Db, _token: Token,
                    since: str = Query("", description="only activity at or after this date "
                                       "(YYYY-MM-DD or RFC 3339)")):
    try:
        return friction.build(c, None, since)
    except ValueError:
        raise HTTPException(400, "since must be a date such as 2026-11-01") from None


@router.get("/api/v1/devices", summary="Every device's last heartbeat and its flags")
def devices(c: Db, _token: Token):
    keep = ("program", "store", "device", "state", "list_version", "outbox", "software",
            "last_seen_at", "offline_at", "camera", "printer", "paper", "clock", "flags")
    return {"devices": [{k: d[k] for k in keep} for d in fleet.devices(c)]}
