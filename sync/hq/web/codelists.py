"""Code lists on the web: the dashboard's Code lists page (owners) and
``POST/GET /api/v1/code-lists`` for integrations (see :mod:`sync.hq.codelists`).

Uploads are bounded: :class:`BodyLimit` stops any request body on these paths past
``serve --max-upload-mb`` (413), also one sent without a Content-Length, before it
fills the disk; a bundle is received into a file, never held in memory.
"""

import json

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from sync.hq import codelists
from sync.hq.codelists import ListError
from sync.hq.web.deps import Db, Token, User, check_csrf
from sync.hq.web.i18n import N_
from sync.hq.web.pages import _page

UPLOAD_PATHS = ("/lists/upload", "/api/v1/code-lists")
FIELDS = ("program", "version", "base_version", "key_id", "records", "bytes", "manifest_sha256",
          "issued_at", "expires_at", "uploaded_at", "uploaded_by", "published_at", "published_by",
          "devices")
pages = APIRouter(include_in_schema=False)
api = APIRouter()


class TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: at most ``limit`` bytes of body on the upload paths."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in UPLOAD_PATHS:
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit and scope["path"].startswith("/api/"):
            return await self._refuse(send)
        seen = 0
        started = False

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise TooLarge
            return message

        async def watched(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, watched)
        except TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send):
        body = json.dumps({"detail": f"the upload is larger than {self.limit >> 20} MB "
                           "(serve --max-upload-mb)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _lists(request: Request) -> codelists.Lists:
    return request.app.state.lists


# -- the page ---------------------------------------------------------------------------
def _show(request: Request, c, user, status_code: int = 200, error: str | None = None,
          detail: str = ""):
    lists = _lists(request)
    flash = request.session.pop("flash", None)
    return _page(request, "lists.html", user, status_code=status_code, error=error,
                 detail=detail, flash=flash, lists=codelists.overview(c), versions=codelists.by_version(c),
                 ready=lists.ready, trusted=sorted(lists.trusted),
                 max_mb=lists.max_upload >> 20)


def _owner_only(request: Request, user):
    return _page(request, "message.html", user, status_code=403,
                 message=N_("Only an owner can manage code lists."))


@pages.get("/lists")
def lists_page(request: Request, c: Db, user: User):
    if user.role != "owner":
        return _owner_only(request, user)
    return _show(request, c, user)


@pages.post("/lists/upload")
async def upload(request: Request, c: Db, user: User):
    lists = _lists(request)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > lists.max_upload:
        return _show(request, c, user, 413, N_("The file is larger than the upload limit."))
    form = await request.form(max_files=1, max_fields=5)
    check_csrf(request, str(form.get("csrf", "")))
    if user.role != "owner":
        return _owner_only(request, user)
    file = form.get("bundle")
    if not isinstance(file, UploadFile) or not file.filename:
        return _show(request, c, user, 400, N_("Choose a bundle .tar to upload."))
    try:
        target = lists.incoming()
        try:
            with open(target, "wb") as out:
                while block := await file.read(1 << 20):
                    out.write(block)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        row = await run_in_threadpool(codelists.accept, request.app.state.engine, c, lists,
                                      target, user.name)
        if form.get("publish"):
            row = await run_in_threadpool(codelists.publish, c, lists, row["program"],
                                          row["version"], user.name)
    except ListError as exc:
        return _show(request, c, user, exc.status, N_("The list was not taken:"), str(exc))
    request.session["flash"] = {"program": row["program"], "version": row["version"],
                                "published": bool(row["published_at"])}
    return RedirectResponse("/lists", status_code=303)


@pages.post("/lists/publish")
def publish_page(request: Request, c: Db, user: User, program: str = Form(...),
                 version: int = Form(...), csrf: str = Form(...)):
    check_csrf(request, csrf)
    if user.role != "owner":
        return _owner_only(request, user)
    try:
        codelists.publish(c, _lists(request), program, version, user.name)
    except ListError as exc:
        return _show(request, c, user, exc.status, N_("The list was not published:"), str(exc))
    request.session["flash"] = {"program": program, "version": version, "published": True}
    return RedirectResponse("/lists", status_code=303)


# -- the API ------------------------------------------------------------------------------
_CODE = {"type": "object", "required": ["code"], "properties": {
    "code": {"type": "string"}, "reward_id": {"type": "string"},
    "max_uses": {"type": "integer", "minimum": 1},
    "valid_from": {"type": "string", "format": "date-time"},
    "valid_until": {"type": "string", "format": "date-time"},
    "stores": {"type": "array", "items": {"type": "string"}},
    "op": {"type": "string", "enum": ["put", "revoke"]}}}
_BODY = {"required": True, "content": {
    "application/x-tar": {"schema": {"type": "string", "format": "binary",
                                     "description": "a bundle made by kiosk-hq sign --tar"}},
    "application/json": {"schema": {"type": "object", "required": ["program", "codes"],
                                    "properties": {
                                        "program": {"type": "string"},
                                        "delta": {"type": "boolean", "default": False},
                                        "version": {"type": "integer"},
                                        "rewards": {"type": "object"},
                                        "expires_days": {"type": "number"},
                                        "codes": {"type": "array", "items": _CODE}}}},
    "text/csv": {"schema": {"type": "string", "description":
                            "kiosk-hq sign's columns: code,reward_id,valid_from,valid_until,"
                            "max_uses,stores[,op]; program (and delta, version) as query "
                            "parameters"}}}}


def _public(row: dict) -> dict:
    return {k: row.get(k) for k in FIELDS if k in row}


@api.get("/api/v1/code-lists", summary="Code lists kept at HQ and the devices running each")
def list_code_lists(c: Db, _token: Token):
    return {"lists": [_public(r) for r in codelists.overview(c)],
            "devices_by_version": codelists.by_version(c)}


@api.post("/api/v1/code-lists", status_code=201, openapi_extra={"requestBody": _BODY},
          summary="Add a code list: a signed bundle (.tar), or codes/a delta as JSON or CSV "
                  "(HQ signs those only if started with --signing-key)")
async def add_code_list(request: Request, c: Db, token: Token,
                        publish: bool = Query(True, description="publish it to the devices now"),
                        program: str = Query("", description="CSV only: the program"),
                        delta: bool = Query(False, description="CSV only: a delta on the newest list"),
                        version: int | None = Query(None, ge=1, description="CSV only: the version "
                                                    "(default: the next one)")):
    lists = _lists(request)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    actor = f"token:{token}"
    try:
        if kind in ("application/json", "text/csv"):
            raw = await request.body()  # bounded by BodyLimit
            if kind == "application/json":
                try:
                    body = json.loads(raw)
                except ValueError as exc:
                    raise ListError(f"the body is not JSON ({exc})") from None
                if not isinstance(body, dict) or not isinstance(body.get("codes"), list) \
                        or not all(isinstance(x, dict) for x in body["codes"]):
                    raise ListError('the body must be {"program": ..., "codes": [{"code": ...}]}')
                days = body.get("expires_days", 30)
                if not isinstance(days, int | float) or isinstance(days, bool) \
                        or not 0 < days <= 3660:
                    raise ListError("expires_days must be a number of days above 0, at most 3660")
                args = dict(program=body.get("program"), rows=body["codes"],
                            delta=body.get("delta") is True, version=body.get("version"),
                            rewards=body.get("rewards"), expires_days=float(days))
            else:
                try:
                    rows = codelists.rows_from_csv(raw.decode("utf-8-sig"))
                except (UnicodeDecodeError, ValueError) as exc:
                    raise ListError(f"the body is not a UTF-8 CSV ({exc})") from None
                args = dict(program=program, rows=rows, delta=delta, version=version)
            if args["version"] is not None and (not isinstance(args["version"], int)
                                                or isinstance(args["version"], bool)
                                                or not 1 <= args["version"] < 2**63):
                raise ListError("version must be a positive whole number")
            target = await run_in_threadpool(lambda: codelists.sign(c, lists, **args))
        elif kind in ("application/x-tar", "application/octet-stream"):
            target = lists.incoming()
            try:
                with open(target, "wb") as out:
                    async for block in request.stream():
                        out.write(block)
            except BaseException:
                target.unlink(missing_ok=True)
                raise
        else:
            raise ListError("send a bundle as application/x-tar, or codes as application/json "
                            "or text/csv", 415)
        row = await run_in_threadpool(codelists.accept, request.app.state.engine, c, lists,
                                      target, actor)
        if publish:
            row = await run_in_threadpool(codelists.publish, c, lists, row["program"],
                                          row["version"], actor)
    except ListError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    return JSONResponse(_public(row), status_code=201)
