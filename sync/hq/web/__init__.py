"""HQ's web service: the integration API and the dashboard, one ASGI app (FastAPI).

FastAPI is chosen because it writes the OpenAPI document of every endpoint from the
code itself (``/api/openapi.json``), so the contract other tools script against can
not drift from what the server does. Pages are server-rendered Jinja2 templates
(:mod:`sync.hq.web.pages`); the API is :mod:`sync.hq.web.api`.

Every request opens its own database connection (:meth:`Engine.connect`): SQLite
readers in WAL mode never wait for the collector, PostgreSQL connections are cheap
at dashboard rates. Health is the database answering and the collector's broker
connection being up.
"""

from collections.abc import Callable

from fastapi import FastAPI
from starlette.middleware.sessions import SessionMiddleware

from sync.hq import auth
from sync.hq.codelists import Lists
from sync.hq.db import HqDb
from sync.hq.engine import Engine
from sync.hq.web.deps import LoginNeeded


def make_app(engine: Engine, broker_up: Callable[[], bool], *, secure_cookies: bool = False,
             lists: Lists | None = None) -> FastAPI:
    """The app for ``engine``; ``broker_up()`` tells whether the collector is connected;
    ``lists``: where uploaded code lists go and whom to trust (:mod:`sync.hq.codelists`)."""
    from sync.hq.web import api, codelists, pages

    setup = HqDb(engine)  # migrates the schema before the first request
    try:
        secret = auth.session_secret(setup.conn)
    finally:
        setup.close()
    app = FastAPI(title="redeem-kiosk HQ", version="1", openapi_url="/api/openapi.json",
                  docs_url=None, redoc_url=None)
    app.add_middleware(SessionMiddleware, secret_key=secret, same_site="strict",
                       https_only=secure_cookies, session_cookie="kiosk_hq")
    app.state.engine = engine
    app.state.broker_up = broker_up
    app.state.lists = lists or Lists(None)
    app.add_middleware(codelists.BodyLimit, limit=app.state.lists.max_upload)
    app.include_router(api.router)
    app.include_router(codelists.api)
    app.include_router(pages.router)
    app.include_router(codelists.pages)
    app.add_exception_handler(LoginNeeded, pages.login_redirect)
    return app
