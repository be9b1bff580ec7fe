"""What every request needs: its own database connection, and who is asking."""

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from sync.hq import auth
from sync.hq.engine import Conn


def connection(request: Request):
    conn = request.app.state.engine.connect()
    try:
        yield conn
    finally:
        conn.close()


Db = Annotated[Conn, Depends(connection)]


class LoginNeeded(Exception):
    """Raised by :func:`signed_in` for a visitor without a session (-> /login)."""


def signed_in(request: Request, c: Db) -> auth.User:
    user = auth.load_user(c, request.session.get("user", ""))
    if user is None:
        raise LoginNeeded(request.url.path)
    return user


User = Annotated[auth.User, Depends(signed_in)]


def check_csrf(request: Request, token: str) -> None:
    if not auth.same(token, request.session.get("csrf", "")):
        raise HTTPException(400, "the form expired: reload the page and try again")


def integration(request: Request, c: Db) -> str:
    """The name of the bearer token of this API request, or 401."""
    kind, _, token = request.headers.get("authorization", "").partition(" ")
    name = auth.token_name(c, token.strip()) if kind.lower() == "bearer" else None
    if name is None:
        raise HTTPException(401, "a valid integration token is needed "
                                 "(Authorization: Bearer TOKEN)",
                            headers={"WWW-Authenticate": "Bearer"})
    return name


Token = Annotated[str, Depends(integration)]
