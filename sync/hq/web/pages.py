"""The dashboard's pages: login, redemptions (with a chart and CSV), fleet, conflicts,
friction, audit. Server-rendered; every form carries the session's CSRF token."""

import csv
import io
import secrets
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.templating import Jinja2Templates

from sync.hq import audit, auth, fleet, friction
from sync.hq.web import i18n
from sync.hq.web.deps import Db, User, check_csrf
from sync.hq.web.i18n import N_

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def _when(stamp: str | None) -> str:
    """An RFC 3339 time as people read it on a dashboard: 2026-12-01 14:02 (UTC)."""
    return (stamp or "")[:16].replace("T", " ")


TEMPLATES.env.filters["when"] = _when
RESOLUTIONS = ("accept", "charge_back", "note")
PAGE_ROWS = 200
router = APIRouter(include_in_schema=False)


def login_redirect(request: Request, exc) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(str(exc))}", status_code=303)


def _page(request: Request, name: str, user: auth.User | None, status_code: int = 200,
          **context):
    request.session.setdefault("csrf", secrets.token_urlsafe(24))
    lang = i18n.choose(request.session, request.query_params.get("lang"),
                       request.headers.get("accept-language", ""))
    tr = i18n.translations(lang).gettext
    return TEMPLATES.TemplateResponse(request, name, {
        "user": user, "csrf": request.session["csrf"], "lang": lang, "_": tr,
        "label": lambda word: tr(i18n.LABELS.get(word, word)),
        "languages": list(i18n.NAMES.items()), **context}, status_code=status_code)


def _local(target: str) -> str:
    """Only same-site paths after login (no open redirect to another host)."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


# -- session ------------------------------------------------------------------------
@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/"):
    return _page(request, "login.html", None, next=_local(next), error=None)


@router.post("/login")
def login(request: Request, c: Db, user: str = Form(...), password: str = Form(...),
          csrf: str = Form(...), next: str = Form("/")):
    check_csrf(request, csrf)
    found = auth.check_password(c, user, password)
    if found is None:
        audit.record(c, user[:60], "login.failed")
        return _page(request, "login.html", None, 401, next=_local(next),
                     error=N_("Wrong user name or password."))
    audit.record(c, found.name, "login")
    request.session.clear()
    request.session.update(user=found.name, csrf=secrets.token_urlsafe(24))
    return RedirectResponse(_local(next), status_code=303)


@router.post("/logout")
def logout(request: Request, csrf: str = Form(...)):
    if auth.same(csrf, request.session.get("csrf", "")):
        request.session.clear()
    return RedirectResponse("/login", status_code=303)


# -- redemptions ----------------------------------------------------------------------
def _filters(user: auth.User, since: str, until: str, store: str, q: str, *,
             daily: bool = False) -> tuple[str, list]:
    """The WHERE clause of the filters, on ``events`` or (``daily``, no search) on the
    roll-up ``daily`` whose ``day`` is the events' date."""
    where, params = ["1 = 1"], []
    if since:
        where.append("day >= ?" if daily else "at >= ?")
        params.append(since[:10] if daily else since)
    if until:
        where.append("day <= ?" if daily else "at < ?")
        params.append(until if daily else (date.fromisoformat(until) + timedelta(days=1)).isoformat())
    if store:
        where.append("store = ?")
        params.append(store)
    if user.role != "owner":
        where.append(f"store IN ({', '.join('?' for _ in user.stores)})")
        params += list(user.stores)
    if q:
        where.append("(id = ? OR code_hash LIKE ?)")
        params += [q.strip(), q.strip().lower() + "%"]
    return " AND ".join(where), params


def _dates(*values: str) -> bool:
    try:
        for v in values:
            if v:
                date.fromisoformat(v)
    except ValueError:
        return False
    return True


@router.get("/", response_class=HTMLResponse)
def redemptions(request: Request, c: Db, user: User, since: str = "", until: str = "",
                store: str = "", q: str = ""):
    if not _dates(since, until):
        return _page(request, "redemptions.html", user, error=N_("Dates are YYYY-MM-DD."),
                     days=[], rows=[], events=[], totals={}, args=request.query_params)
    where, params = _filters(user, since, until, store, q)
    if q:  # a search: the few events it finds
        days = c.rows(f"SELECT substr(at, 1, 10) AS day, count(*) AS n FROM events "
                      f"WHERE kind = 'redeem' AND {where} GROUP BY substr(at, 1, 10) "
                      f"ORDER BY day", params)
        rows = c.rows(f"SELECT store, reward_id, count(*) AS redeemed, "
                      f"sum(CASE WHEN voided_by IS NOT NULL THEN 1 ELSE 0 END) AS voided "
                      f"FROM events WHERE kind = 'redeem' AND {where} "
                      f"GROUP BY store, reward_id ORDER BY store, reward_id", params)
    else:  # the roll-up (migration 0007): a row per day, store and reward, not per event
        dwhere, dparams = _filters(user, since, until, store, q, daily=True)
        days = c.rows(f"SELECT day, CAST(sum(redeemed) AS BIGINT) AS n FROM daily "
                      f"WHERE {dwhere} GROUP BY day ORDER BY day", dparams)
        rows = c.rows(f"SELECT store, NULLIF(reward_id, '') AS reward_id, "
                      f"CAST(sum(redeemed) AS BIGINT) AS redeemed, "
                      f"CAST(sum(voided) AS BIGINT) AS voided FROM daily WHERE {dwhere} "
                      f"GROUP BY store, reward_id ORDER BY store, reward_id", dparams)
    events = c.rows(f"SELECT id, at, store, device, kind, reward_id, code_hash, voided_by "
                    f"FROM events WHERE {where} ORDER BY at DESC LIMIT {PAGE_ROWS}", params)
    top = max((d["n"] for d in days), default=0)
    totals = {"redeemed": sum(r["redeemed"] for r in rows),
              "voided": sum(int(r["voided"] or 0) for r in rows)}
    return _page(request, "redemptions.html", user, error=None, days=days, top=top, rows=rows,
                 events=events, totals=totals, args=request.query_params)


CSV_CHUNKS = (500, 5000)  # rows per query of the CSV export: a small first page, then more


@router.get("/redemptions.csv")
def redemptions_csv(request: Request, user: User, since: str = "", until: str = "",
                    store: str = "", q: str = ""):
    if not _dates(since, until):
        since = until = ""
    where, params = _filters(user, since, until, store, q)
    fields = ("id", "at", "program", "store", "device", "kind", "voids", "reward_id",
              "code_hash", "list_version", "clock", "staff", "received_at", "voided_by")
    engine = request.app.state.engine

    def lines():
        """Pages of CSV_CHUNKS rows on a connection of its own (the response outlives
        the request's): the first bytes leave at once, memory stays flat."""
        conn = engine.connect()
        try:
            out = io.StringIO()
            writer = csv.writer(out)
            writer.writerow(fields)
            after: tuple = ()
            while True:
                more = " AND (at, id) > (?, ?)" if after else ""
                size = CSV_CHUNKS[1] if after else CSV_CHUNKS[0]
                rows = conn.rows(f"SELECT {', '.join(fields)} FROM events WHERE {where}{more} "
                                 f"ORDER BY at, id LIMIT {size}", [*params, *after])
                for r in rows:
                    writer.writerow([r[f] if r[f] is not None else "" for f in fields])
                yield out.getvalue()
                out.seek(0)
                out.truncate()
                if len(rows) < size:
                    break
                after = (rows[-1]["at"], rows[-1]["id"])
        finally:
            conn.close()

    return StreamingResponse(lines(), media_type="text/csv", headers={
        "Content-Disposition": 'attachment; filename="redemptions.csv"'})


# -- fleet, conflicts, audit ------------------------------------------------------------
@router.get("/fleet", response_class=HTMLResponse)
def fleet_page(request: Request, c: Db, user: User):
    stores = () if user.role == "owner" else user.stores
    found = fleet.devices(c, stores) if stores or user.role == "owner" else []
    return _page(request, "fleet.html", user, devices=found)


@router.get("/conflicts", response_class=HTMLResponse)
def conflicts_page(request: Request, c: Db, user: User, show: str = "open"):
    state = "resolution IS NULL" if show == "open" else "resolution IS NOT NULL"
    rows = [r for r in c.rows(f"SELECT event_id, kind, program, store, device, code_hash, "
                              f"detail, flagged_at, resolution, resolved_by, resolved_at, note "
                              f"FROM conflicts WHERE {state} ORDER BY flagged_at")
            if user.sees(r["store"] or "")]
    return _page(request, "conflicts.html", user, conflicts=rows, show=show,
                 resolutions=RESOLUTIONS)


@router.post("/conflicts/resolve")
def resolve(request: Request, c: Db, user: User, event_id: str = Form(...),
            kind: str = Form(...), resolution: str = Form(...), note: str = Form(""),
            csrf: str = Form(...)):
    check_csrf(request, csrf)
    row = c.execute("SELECT store FROM conflicts WHERE event_id = ? AND kind = ?",
                    (event_id, kind)).fetchone()
    if row is None or not user.sees(row[0] or "") or resolution not in RESOLUTIONS:
        return _page(request, "message.html", user, status_code=404,
                     message=N_("That conflict does not exist or is not yours to resolve."))
    with c.write():
        c.execute("UPDATE conflicts SET resolution = ?, resolved_by = ?, resolved_at = ?, "
                  "note = ? WHERE event_id = ? AND kind = ?",
                  (resolution, user.name, date.today().isoformat(), note[:500], event_id, kind))
        audit.record(c, user.name, "conflict.resolve", event_id=event_id, kind=kind,
                     resolution=resolution, note=note[:500])
    return RedirectResponse("/conflicts", status_code=303)


@router.get("/friction", response_class=HTMLResponse)
def friction_page(request: Request, c: Db, user: User, since: str = ""):
    """Where the counter flow hurts (:mod:`sync.hq.friction`); a manager sees their stores."""
    stores = None if user.role == "owner" else tuple(user.stores)
    if not _dates(since):
        return _page(request, "friction.html", user, error=N_("Dates are YYYY-MM-DD."),
                     report=friction.build(c, stores), reasons=friction.REASONS, since="")
    return _page(request, "friction.html", user, error=None, report=friction.build(c, stores, since),
                 reasons=friction.REASONS, since=since)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, c: Db, user: User):
    if user.role != "owner":
        return _page(request, "message.html", user, status_code=403,
                     message=N_("Only an owner can read the audit log."))
    return _page(request, "audit.html", user, rows=audit.latest(c))
