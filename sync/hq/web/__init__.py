"""HQ's web service: the integration API and the dashboard, one ASGI app (FastAPI).

FastAPI is chosen because it writes the OpenAPI document of every endpoint from the
code itself (``/api/openapi.json``), so the contract other tools script against can
not drift from what the server does. Pages are server-rendered Jinja2 templates.

Every request opens its own database connection (:meth:`Engine.connect`): SQLite
readers in WAL mode never wait for the collector, PostgreSQL connections are cheap
at dashboard rates. Health is the database answering and the collector's broker
connection being up.
"""

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from sync import protocol
from sync.hq import auth, report
from sync.hq.db import HqDb
from sync.hq.engine import Conn, Engine, db_errors

API_FIELDS = ("program", *protocol.EVENT_FIELDS, "received_at", "voided_by")
MAX_PAGE = 5000
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def make_app(engine: Engine, broker_up: Callable[[], bool], *, secure_cookies: bool = False) -> FastAPI:
    """The app for ``engine``; ``broker_up()`` tells whether the collector is connected."""
    setup = HqDb(engine)  # migrates the schema before the first request
    try:
        secret = auth.session_secret(setup.conn)
    finally:
        setup.close()
    app = FastAPI(title="redeem-kiosk HQ", version="1", openapi_url="/api/openapi.json",
                  docs_url=None, redoc_url=None)
    app.add_middleware(SessionMiddleware, secret_key=secret, same_site="strict",
                       https_only=secure_cookies, session_cookie="kiosk_hq")

    def conn():
        c = engine.connect()
        try:
            yield c
        finally:
            c.close()

    Db = Annotated[Conn, Depends(conn)]

    def integration(request: Request, c: Db) -> str:
        header = request.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        name = auth.token_name(c, token.strip()) if kind.lower() == "bearer" else None
        if name is None:
            raise HTTPException(401, "a valid integration token is needed "
                                     "(Authorization: Bearer TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})
        return name

    @app.get("/healthz", summary="Database and broker connection are up")
    def healthz():
        try:
            c = engine.connect()
            try:
                c.execute("SELECT 1").fetchone()
            finally:
                c.close()
            db = "ok"
        except db_errors() as exc:
            db = f"error: {exc}"
        broker = "connected" if broker_up() else "disconnected"
        ok = db == "ok" and broker == "connected"
        return JSONResponse({"db": db, "broker": broker}, status_code=200 if ok else 503)

    @app.get("/api/v1/redemptions", summary="Redemption and void events after a cursor")
    def redemptions(since: str = Query("0", description="cursor from the previous page's next"),
                    limit: int = Query(500, ge=1, le=MAX_PAGE),
                    *, c: Db, _token: Annotated[str, Depends(integration)]):
        if not since.isdigit():
            raise HTTPException(400, "since must be a cursor returned as next (digits)")
        col = engine.cursor_column
        rows = c.rows(f"SELECT {col} AS cursor, {', '.join(API_FIELDS)} FROM events "
                      f"WHERE {col} > ? ORDER BY {col} LIMIT ?", (int(since), limit))
        nxt = str(rows[-1]["cursor"]) if rows else since
        return {"events": [{k: r[k] for k in API_FIELDS} for r in rows], "next": nxt}

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request, next: str = "/"):
        request.session.setdefault("csrf", secrets.token_urlsafe(24))
        return TEMPLATES.TemplateResponse(request, "login.html",
                                          {"next": _local(next), "error": None})

    @app.post("/login", include_in_schema=False)
    def login(request: Request, user: str = Form(...), password: str = Form(...),
              csrf: str = Form(...), next: str = Form("/"), *, c: Db):
        if not auth.same(csrf, request.session.get("csrf", "")):
            raise HTTPException(400, "the form expired: reload the login page")
        found = auth.check_password(c, user, password)
        if found is None:
            return TEMPLATES.TemplateResponse(request, "login.html", status_code=401,
                                              context={"next": _local(next),
                                                       "error": "Wrong user name or password."})
        request.session.clear()
        request.session.update(user=found.name, csrf=secrets.token_urlsafe(24))
        return RedirectResponse(_local(next), status_code=303)

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, csrf: str = Form(...)):
        if auth.same(csrf, request.session.get("csrf", "")):
            request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard(request: Request, c: Db):
        user = auth.load_user(c, request.session.get("user", ""))
        if user is None:
            return RedirectResponse(f"/login?next={quote(str(request.url.path))}", status_code=303)
        data = report.build(HqDbView(c))
        rows = [r for r in data["rows"] if user.sees(r["store"])]
        conflicts = [x for x in data["conflicts"] if user.sees(x["store"] or "")]
        return TEMPLATES.TemplateResponse(request, "dashboard.html", {
            "user": user, "rows": rows, "conflicts": conflicts,
            "csrf": request.session.get("csrf", ""),
            "totals": {"redeemed": sum(r["redeemed"] for r in rows),
                       "voided": sum(r["voided"] for r in rows)}})

    return app


class HqDbView:
    """What :func:`sync.hq.report.build` needs (``rows``) over a request's connection."""

    def __init__(self, conn):
        self.conn = conn

    def rows(self, sql, params=()):
        return self.conn.rows(sql, params)


def _local(target: str) -> str:
    """Only same-site paths after login (no open redirect to another host)."""
    return target if target.startswith("/") and not target.startswith("//") else "/"
