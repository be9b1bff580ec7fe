"""``kiosk-hq serve``: collector + web dashboard + integration API in one process.

    kiosk-hq serve --db sqlite:///hq.sqlite --broker mqtts://broker:8883 --ca ca.crt \\
        --username hq-serve-1 --password-file hq.pass [--listen 127.0.0.1:8080]

The collector (:class:`sync.hq.collect.Collector`) runs on its own thread with its
own database connection and acks only after commit, exactly as ``kiosk-hq collect``;
the web app (:mod:`sync.hq.web`) runs in uvicorn on the main thread. If the collector
stops for any reason other than a shutdown, the process exits with status 1 so that
systemd (``systemd/hq/kiosk-hq.service``) restarts it: a server that answers web
requests but no longer collects must not look healthy.

Also here: ``kiosk-hq api-token create|revoke`` and ``kiosk-hq user add``.
"""

import getpass
import logging
import sys
import threading
from pathlib import Path

from sync.hq import audit, auth, codelists, publish, webhooks
from sync.hq.common import HqError, add_broker_args, settings_from_args
from sync.hq.db import HqDb
from sync.hq.engine import db_errors

log = logging.getLogger("kiosk.hq.serve")
DEFAULT_LISTEN = "127.0.0.1:8080"


def register(sub) -> None:
    p = sub.add_parser("serve", help="collector, web dashboard and integration API in one service")
    add_broker_args(p)
    _db_arg(p)
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"where the web service listens (default {DEFAULT_LISTEN}; put a "
                        "TLS reverse proxy in front of it)")
    p.add_argument("--group", help="shared-subscription group of the collectors; keep it secret "
                   "(default: a random name kept in --db, as kiosk-hq collect)")
    p.add_argument("--program", default="+", help="only this program (default: all)")
    p.add_argument("--secure-cookies", action="store_true",
                   help="session cookie only over HTTPS (set this behind a TLS proxy)")
    p.add_argument("--trust", action="append", default=[], metavar="KEY_ID=PATH",
                   help="a public key uploaded code lists may be signed with (repeatable)")
    p.add_argument("--bundles", type=Path, metavar="DIR",
                   help="where uploaded code lists are kept (default: bundles/ beside a "
                        "SQLite database; needed with PostgreSQL)")
    p.add_argument("--max-upload-mb", type=int, default=codelists.DEFAULT_MAX_UPLOAD_MB,
                   help=f"largest list upload (default {codelists.DEFAULT_MAX_UPLOAD_MB})")
    p.add_argument("--signing-key", type=Path, metavar="PATH",
                   help="opt in: HQ signs codes sent as JSON/CSV with this private key "
                        "(a copy of the server is then a copy of the key; docs/hq.md)")
    p.add_argument("--key-id", help="the key id devices trust --signing-key under")
    p.set_defaults(handler=cmd_serve)

    tok = sub.add_parser("api-token", help="integration tokens for the HQ API")
    tsub = tok.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = tsub.add_parser("create", help="make a token; it is printed once, as the last line")
    _db_arg(create)
    create.add_argument("--name", required=True, help="who uses it, e.g. loyalty-platform")
    create.set_defaults(handler=cmd_token_create)
    revoke = tsub.add_parser("revoke", help="stop a token from working")
    _db_arg(revoke)
    revoke.add_argument("--name", required=True)
    revoke.set_defaults(handler=cmd_token_revoke)

    user = sub.add_parser("user", help="dashboard users")
    usub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = usub.add_parser("add", help="add a dashboard user (password from stdin or a prompt)")
    _db_arg(add)
    add.add_argument("--name", required=True)
    add.add_argument("--role", choices=auth.ROLES, default="owner")
    add.add_argument("--store", action="append", default=[],
                     help="a store a manager may see (repeatable)")
    add.set_defaults(handler=cmd_user_add)

    hook = sub.add_parser("webhook", help="webhooks to the loyalty platform (docs/hq.md)")
    hsub = hook.add_subparsers(dest="webhook_command", metavar="ACTION", required=True)
    hadd = hsub.add_parser("add", help="post events to URL; the signing secret is the last line")
    _db_arg(hadd)
    hadd.add_argument("--name", required=True)
    hadd.add_argument("--url", required=True, help="https://platform.example/kiosk-webhook")
    hadd.add_argument("--history", action="store_true",
                      help="also deliver everything already stored (default: from now on)")
    hadd.set_defaults(handler=cmd_webhook_add)
    hrm = hsub.add_parser("remove", help="stop delivering to a webhook")
    _db_arg(hrm)
    hrm.add_argument("--name", required=True)
    hrm.set_defaults(handler=cmd_webhook_remove)
    hls = hsub.add_parser("list", help="webhooks, deliveries made and the last error")
    _db_arg(hls)
    hls.set_defaults(handler=cmd_webhook_list)


def _db_arg(p) -> None:
    p.add_argument("--db", default="sqlite:///hq.sqlite",
                   help="sqlite:///PATH (default sqlite:///hq.sqlite) or postgresql://USER@HOST/DB")


def _open(args, what: str) -> HqDb | None:
    try:
        return HqDb(args.db)
    except db_errors() as exc:
        print(f"kiosk-hq: {what}: {exc}", file=sys.stderr)
        return None


def cmd_token_create(args) -> int:
    def action(conn):
        token = auth.create_token(conn, args.name)
        audit.record(conn, _cli_actor(), "token.create", name=args.name)
        print(f"token {args.name!r} created; it is shown only now (HQ keeps its hash):")
        print(token)
    return _with_db(args, "api-token", action)


def cmd_token_revoke(args) -> int:
    def action(conn):
        auth.revoke_token(conn, args.name)
        audit.record(conn, _cli_actor(), "token.revoke", name=args.name)
        print(f"token {args.name!r} revoked")
    return _with_db(args, "api-token", action)


def cmd_user_add(args) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
    else:
        password = sys.stdin.readline().rstrip("\n")

    def action(conn):
        auth.add_user(conn, args.name, password, args.role, tuple(args.store))
        audit.record(conn, _cli_actor(), "user.add", name=args.name, role=args.role,
                     stores=",".join(args.store))
        print(f"user {args.name!r} added ({args.role})")
    return _with_db(args, "user", action)


def _cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _with_db(args, what: str, action) -> int:
    db = _open(args, what)
    if db is None:
        return 1
    try:
        action(db.conn)
    except (auth.AuthError, webhooks.WebhookError) as exc:
        print(f"kiosk-hq: {what}: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()
    return 0


def cmd_webhook_add(args) -> int:
    def action(conn):
        secret = webhooks.add(conn, args.name, args.url, from_now=not args.history)
        audit.record(conn, _cli_actor(), "webhook.add", name=args.name, url=args.url)
        print(f"webhook {args.name!r} -> {args.url}; signing secret (shown only now):")
        print(secret)
    return _with_db(args, "webhook", action)


def cmd_webhook_remove(args) -> int:
    def action(conn):
        webhooks.remove(conn, args.name)
        audit.record(conn, _cli_actor(), "webhook.remove", name=args.name)
        print(f"webhook {args.name!r} removed")
    return _with_db(args, "webhook", action)


def cmd_webhook_list(args) -> int:
    def action(conn):
        for hook in webhooks.listing(conn):
            error = f"; last error {hook['last_error']}" if hook["last_error"] else ""
            print(f"{hook['name']}: {hook['url']} ({hook['delivered']} delivered{error})")
    return _with_db(args, "webhook", action)


def _listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {text!r}: use HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host.strip("[]"), int(port)


def _lists(args, engine) -> codelists.Lists:
    """Code-list options: the folder, the trusted keys, HQ's own key if opted in."""
    from kiosk.core import keys

    folder = args.bundles or (engine.path.parent / "bundles" if engine.kind == "sqlite" else None)
    trusted = codelists.parse_trust(args.trust)
    signer = None
    if bool(args.signing_key) != bool(args.key_id):
        raise ValueError("--signing-key and --key-id go together")
    if args.signing_key:
        try:
            key = keys.load_private(args.signing_key)
        except (OSError, ValueError) as exc:
            raise ValueError(f"--signing-key {args.signing_key}: {exc}") from None
        signer = (args.key_id, key)
        trusted.setdefault(args.key_id, key.public_key())
    if args.max_upload_mb < 1:
        raise ValueError("--max-upload-mb must be at least 1")
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    return codelists.Lists(folder, trusted, args.max_upload_mb << 20, signer)


def cmd_serve(args) -> int:
    import uvicorn

    from sync.hq.collect import Collector
    from sync.hq.web import make_app

    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("paho").setLevel(logging.WARNING)
    try:
        host, port = _listen(args.listen)
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"kiosk-hq: serve: {exc}", file=sys.stderr)
        return 2
    db = _open(args, "serve")
    if db is None:
        return 1
    try:
        lists = _lists(args, db.engine)
    except (ValueError, OSError) as exc:
        db.close()
        print(f"kiosk-hq: serve: {exc}", file=sys.stderr)
        return 2
    collector = Collector(db, args.program, args.group, fleet=True)

    def publish_list(path):  # over the collector's connection: one connection per login
        client = collector.client
        if client is None or not client.is_connected():
            raise HqError("the broker connection is down; try again when it is back (/healthz)")
        return publish.publish(settings, path, client=client, log=log.info)

    lists.publisher = publish_list
    app = make_app(db.engine, lambda: bool(collector.client and collector.client.is_connected()),
                   secure_cookies=args.secure_cookies, lists=lists)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           access_log=False))
    stop = threading.Event()
    failure: list[str] = []

    def collect() -> None:
        try:
            collector.run(settings, stop=stop)
        except (HqError, OSError, ValueError) as exc:
            failure.append(str(exc))
        except Exception as exc:  # any death of the collector ends the service
            log.exception("the collector stopped")
            failure.append(f"{type(exc).__name__}: {exc}")
        if not stop.is_set():
            failure.append(failure.pop() if failure else "the collector stopped")
            server.should_exit = True

    thread = threading.Thread(target=collect, name="hq-collector", daemon=True)
    thread.start()
    dispatcher = webhooks.Dispatcher(db.engine).start()
    print(f"kiosk-hq serve: http://{host}:{port}/ (database {db.engine.display}, "
          f"broker {settings.url})", flush=True)
    try:
        server.run()
    finally:
        stop.set()
        dispatcher.stop()
        thread.join(10)
        db.close()
    if failure:
        print(f"kiosk-hq: serve: collector stopped: {failure[-1]}", file=sys.stderr)
        return 1
    return 0
