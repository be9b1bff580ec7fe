"""``kiosk-hq demo`` (``make demo-hq``): the HQ dashboard with a small live shop behind it.

Everything is real and throwaway: a TLS mosquitto on a free loopback port, a demo
signing key, ``kiosk-hq serve`` on SQLite (its own process), and three kiosks (their
ledgers and sync agents, as on a device: k1 and k2 in store s1, k3 in s2). The demo
uploads a signed list through the API, the kiosks download it from the broker and
redeem some codes (k3 redeems one k1 already used: a conflict), then k3 goes offline
and a delta is published that only k1 and k2 get. It prints the URL and an owner
login and runs until Ctrl-C (or ``--exit-after`` seconds); the folder is removed at
the end unless ``--dir`` was given.
"""

import json
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

PROGRAM = "demo"
DEVICES = {"k1": "s1", "k2": "s1", "k3": "s2"}
REWARDS = {"coffee": {"type": "item", "value": 1,
                      "title": {"en": "Free coffee", "ru": "Кофе в подарок"}},
           "cake": {"type": "percent", "value": 20, "title": {"en": "20% off cake"}}}
REDEEM = {"k1": [1, 2, 3, 4, 5, 6], "k2": [7, 8, 9, 10], "k3": [11, 12, 13, 1]}


def register(sub) -> None:
    p = sub.add_parser("demo", help="the HQ dashboard on SQLite with a throwaway broker and "
                                    "three demo kiosks (make demo-hq)")
    p.add_argument("--port", type=int, default=0, help="dashboard port (default: a free one)")
    p.add_argument("--dir", type=Path, help="keep everything in DIR (default: a temp folder, "
                                            "removed at the end)")
    p.add_argument("--exit-after", type=float, help="stop after this many seconds")
    p.set_defaults(handler=cmd_demo)


def _code(n: int) -> str:
    return f"DEMO-{n:04d}"


def _sign(folder: Path, key, version: int, numbers, base: int | None, salt: bytes) -> Path:
    from kiosk.core import bundle_writer
    from kiosk.core.codes import code_hash

    spec = bundle_writer.Spec(program=PROGRAM, version=version, key_id="demo", code_salt=salt,
                              rewards=REWARDS, base_version=base)
    records = [{"op": "put", "code_hash": code_hash(salt, _code(n)),
                "reward_id": "cake" if n % 5 == 0 else "coffee", "valid_from": None,
                "valid_until": None, "max_uses": 1, "stores": None} for n in numbers]
    out = bundle_writer.write(spec, records, key, folder / f"demo-v{version}")
    tar = folder / f"demo-v{version}.tar"
    with tarfile.open(tar, "w") as t:
        t.add(out, arcname=out.name)
    return tar


def _call(base: str, token: str, method: str, path: str, body: bytes | None = None,
          kind: str = "application/json"):
    req = urllib.request.Request(base + path, data=body, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": kind})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def _wait(what: str, predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the demo gave up waiting for {what}")
        time.sleep(0.3)


def cmd_demo(args) -> int:
    from kiosk import config, context
    from sync.agent import Agent
    from sync.hq import audit, auth
    from sync.hq.db import HqDb
    from sync.testing import Broker, free_port, hq_settings, make_signing_key, write_device_config

    folder = Path(args.dir or tempfile.mkdtemp(prefix="kiosk-hq-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    broker = Broker(folder / "broker")
    agents: dict[str, tuple] = {}
    ledgers = {}
    serve = None
    try:
        broker.start()
        key, public = make_signing_key(folder / "keys")
        db_url = f"sqlite:///{folder / 'hq.sqlite'}"
        password = secrets.token_urlsafe(9)
        db = HqDb(db_url)
        try:
            auth.add_user(db.conn, "owner", password, "owner")
            audit.record(db.conn, "demo", "user.add", name="owner", role="owner")
            token = auth.create_token(db.conn, "demo")
        finally:
            db.close()
        login = hq_settings(broker)
        port = args.port or free_port()
        base = f"http://127.0.0.1:{port}"
        log = open(folder / "serve.log", "ab")  # noqa: SIM115 - the child keeps it
        serve = subprocess.Popen(
            [sys.executable, "-m", "sync.hq_cli", "serve", "--db", db_url, "--broker", broker.url,
             "--ca", str(broker.pki["ca"]), "--username", login.username,
             "--password-file", str(broker.folder / f"{login.username}.password"),
             "--listen", f"127.0.0.1:{port}",
             "--trust", f"demo={public}"], stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def healthy():
            if serve.poll() is not None:
                raise RuntimeError(f"kiosk-hq serve exited; see {folder / 'serve.log'}")
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2) as resp:
                    return resp.status == 200
            except OSError:
                return False
        _wait("kiosk-hq serve", healthy, 60)
        print(f"kiosk-hq demo: broker {broker.url}, HQ {base}/ (folder {folder})", flush=True)

        for device, store in DEVICES.items():
            secret = broker.add_device(PROGRAM, store, device)
            cfg = write_device_config(folder / device, broker, device=device, store=store,
                                      program=PROGRAM, trust={"demo": public},
                                      password_file=secret)
            ledgers[device] = context.open_ledger(config.load(cfg))
            agent = Agent(config.load(cfg))
            thread = threading.Thread(target=agent.run, daemon=True)
            thread.start()
            agents[device] = (agent, thread)

        salt = secrets.token_bytes(32)
        v1 = _sign(folder, key, 1, range(1, 41), None, salt)
        _call(base, token, "POST", "/api/v1/code-lists", v1.read_bytes(), "application/x-tar")

        def on(version, names):
            found = _call(base, token, "GET", "/api/v1/devices")["devices"]
            return {d["device"] for d in found if d["list_version"] == version} >= set(names)
        _wait("the kiosks to load list 1", lambda: on(1, DEVICES), 90)
        for device, numbers in REDEEM.items():
            for n in numbers:
                ledgers[device].confirm(_code(n))
        _wait("HQ to collect every redemption",
              lambda: not any(ledger.pending_events() for ledger in ledgers.values()), 60)
        agent, thread = agents.pop("k3")  # k3 goes offline (its Last Will tells HQ)
        agent.stop()
        thread.join(15)
        v2 = _sign(folder, key, 2, range(41, 61), 1, salt)
        _call(base, token, "POST", "/api/v1/code-lists", v2.read_bytes(), "application/x-tar")
        _wait("k1 and k2 to load list 2", lambda: on(2, ("k1", "k2")), 90)

        print(f"\nOpen {base}/ and sign in as owner, password {password}", flush=True)
        print("(k3 is offline on list 1, one code was redeemed twice; Ctrl-C ends the demo)",
              flush=True)
        end = time.monotonic() + args.exit_after if args.exit_after else None
        while not stop.wait(0.5) and (end is None or time.monotonic() < end):
            pass
        return 0
    except (OSError, RuntimeError, TimeoutError) as exc:
        print(f"kiosk-hq: demo: {exc}", file=sys.stderr)
        return 1
    finally:
        for agent, thread in agents.values():
            agent.stop()
            thread.join(15)
        if serve is not None:
            serve.terminate()
            try:
                serve.wait(20)
            except subprocess.TimeoutExpired:
                serve.kill()
        broker.stop()
        for ledger in ledgers.values():
            ledger.store.close()
        if args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)
