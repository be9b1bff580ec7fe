"""A real mosquitto for tests and benchmarks: throwaway PKI and the shipped config.

:class:`Broker` starts ``mosquitto`` on a free loopback port with the files in
``sync/mosquitto/`` (only paths, port and persistence folder rewritten), so what the
tests check is what ships. Never the system service.
"""

import datetime as dt
import ipaddress
import itertools
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from importlib import resources
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sync.hq import credentials

# mosquitto's log lines: set up (signal handlers too) and a SIGHUP's reload
RUNNING = re.compile(r"mosquitto version \S+ running")
RELOADED = re.compile(r"Reloading config\.")

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- PKI --------------------------------------------------------------------------
def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _cert(subject: str, key, issuer_name, issuer_key, *, ca: bool, sans=()) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(folder: Path, clients: tuple[str, ...] = ()) -> dict[str, Path]:
    """CA, a server certificate for localhost/127.0.0.1 and client certificates."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca = _cert("kiosk-test-ca", ca_key, None, ca_key, ca=True)
    paths = {"ca": folder / "ca.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    names = {"server": [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]}
    for name in ("server", *clients):
        key = _key()
        cert = _cert(name, key, ca.subject, ca_key, ca=False, sans=names.get(name, ()))
        paths[name] = folder / f"{name}.pem"
        paths[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[f"{name}.key"] = folder / f"{name}.key"
        _write_key(key, paths[f"{name}.key"])
    return paths


# -- broker -----------------------------------------------------------------------
def shipped(name: str) -> str:
    return resources.files("sync").joinpath("mosquitto", name).read_text(encoding="utf-8")


def render_config(port: int, folder: Path, pki: dict[str, Path],
                  overrides: dict[str, str] | None = None) -> str:
    """The shipped mosquitto.conf with this folder's paths and a loopback port."""
    values = {**(overrides or {}),
        "password_file": folder / "passwd", "acl_file": folder / "acl",
        "persistence_location": f"{folder / 'data'}/", "cafile": pki["ca"],
        "certfile": pki["server"], "keyfile": pki["server.key"],
        "listener": f"{port} 127.0.0.1",
    }
    lines = []
    for line in shipped("mosquitto.conf").splitlines():
        key = line.split(" ", 1)[0]
        lines.append(f"{key} {values[key]}" if key in values else line)
    # The shipped file leaves persistence_location to Debian's main config.
    lines.insert(0, f"persistence_location {values['persistence_location']}")
    lines += ["log_dest file " + str(folder / "mosquitto.log"), "log_type all"]
    if os.geteuid() == 0:  # mosquitto would drop to user "mosquitto", who cannot read tmp
        lines.append("user root")
    return "\n".join(lines) + "\n"


class Broker:
    """mosquitto on 127.0.0.1:PORT with TLS, the shipped ACL and per-test users."""

    def __init__(self, folder: Path, port: int | None = None, *, clients: tuple[str, ...] = (),
                 overrides: dict[str, str] | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "data").mkdir(exist_ok=True)
        self.port = port or free_port()
        self.pki = make_pki(self.folder / "pki", clients=("client", *clients))
        (self.folder / "acl").write_text(shipped("acl"))
        (self.folder / "passwd").write_text("")
        (self.folder / "passwd").chmod(0o600)
        self.conf = self.folder / "mosquitto.conf"
        self.conf.write_text(render_config(self.port, self.folder, self.pki, overrides))
        self.proc: subprocess.Popen | None = None
        self.passwords: dict[str, str] = {}
        self._runs = 0  # "mosquitto version ... running" lines seen in its log

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    def add_user(self, user: str, password: str | None = None) -> Path:
        """A password-file entry; returns a file holding the password."""
        password = password or credentials.new_password()
        credentials.upsert_password(self.folder / "passwd", user, password)
        self.passwords[user] = password
        path = self.folder / f"{user}.password"
        path.write_text(password + "\n")
        self.reload()
        return path

    def add_hq_user(self, user: str) -> Path:
        """An HQ tool login (its own ACL block, like ``kiosk-hq broker-user --acl-file``)."""
        credentials.upsert_acl(self.folder / "acl", user, credentials.hq_acl(user))
        return self.add_user(user)

    def add_device(self, program: str, store: str, device: str) -> Path:
        credentials.upsert_acl(self.folder / "acl", device,
                               credentials.device_acl(program, store, device))
        return self.add_user(device)

    def start(self, timeout: float = 10.0) -> "Broker":
        log = open(self.folder / "stdout.log", "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.folder / 'stdout.log').read_text()}"
                                   f"{self._log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                time.sleep(0.05)
                continue
            # mosquitto listens before it sets its signal handlers, and a SIGHUP (reload)
            # in between ends it; "running" is logged once they are set
            runs = self._log_count(RUNNING)
            if runs > self._runs:
                self._runs = runs
                return self
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not start listening")

    def _log_tail(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text()[-2000:] if path.exists() else ""

    def reload(self) -> None:
        """SIGHUP: mosquitto re-reads the password and ACL files."""
        if self.proc and self.proc.poll() is None:
            before = self._reloads()
            # mosquitto logs this line and reloads within its (single) main loop, so
            # connections it handles after the line see the new files. Two SIGHUPs close
            # together make one reload, so a signal not answered in 5 s is sent again
            # (a busy 2-core machine can take that long).
            for attempt in range(6):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited ({self.proc.returncode}): {self._log_tail()}")
                self.proc.send_signal(1)
                try:
                    wait_until(lambda: self._reloads() > before, 5, interval=0.01,
                               what="broker reload")
                    return
                except AssertionError:
                    if attempt == 5:
                        raise

    def _reloads(self) -> int:
        return self._log_count(RELOADED)

    def _log_count(self, pattern: re.Pattern) -> int:
        path = self.folder / "mosquitto.log"
        return len(pattern.findall(path.read_text(errors="replace"))) if path.exists() else 0

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- scenario helpers -----------------------------------------------------------------
def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def make_signing_key(folder: Path):
    """An Ed25519 key pair; returns (private key, public PEM path)."""
    from kiosk.core import keys

    folder.mkdir(parents=True, exist_ok=True)
    priv, pub = keys.generate(folder)
    return keys.load_private(priv), pub


def make_bundle(out: Path, key, *, key_id: str, program: str, version: int, codes,
                salt: bytes = b"s" * 32, per_chunk: int = 100_000, base_version=None,
                expires_days: float = 30.0) -> Path:
    """A signed bundle of ``codes``: strings, or (code, max_uses) pairs."""
    from kiosk.core import bundle_writer
    from kiosk.core.codes import code_hash

    rewards = {"coffee": {"type": "item", "value": 1, "title": {"en": "Free coffee"}}}
    spec = bundle_writer.Spec(program=program, version=version, key_id=key_id, code_salt=salt,
                              rewards=rewards, base_version=base_version,
                              expires_days=expires_days)

    def records():
        for item in codes:
            code, uses = (item, 1) if isinstance(item, str) else item
            yield {"op": "put", "code_hash": code_hash(salt, code), "reward_id": "coffee",
                   "valid_from": None, "valid_until": None, "max_uses": uses, "stores": None}

    return bundle_writer.write(spec, records(), key, out, per_chunk=per_chunk)


def write_device_config(folder: Path, broker: "Broker", *, device: str, store: str,
                        program: str, trust: dict[str, Path], password_file: Path | None,
                        mqtt: dict | None = None) -> Path:
    """A kiosk.toml for a device talking to ``broker`` over TLS."""
    import tomli_w

    folder.mkdir(parents=True, exist_ok=True)
    section = {"broker": broker.url, "ca": str(broker.pki["ca"]), "username": device,
               "heartbeat_seconds": 2, "ack_timeout_seconds": 3, "reconnect_max_seconds": 2,
               "poll_seconds": 0.1}
    if password_file:
        section["password_file"] = str(password_file)
    section.update(mqtt or {})
    data = {"device": {"id": device, "store": store, "program": program,
                       "data_dir": str(folder / "data")},
            "trust": {"keys": {k: str(v) for k, v in trust.items()}},
            "mqtt": section}
    path = folder / "kiosk.toml"
    path.write_text(tomli_w.dumps(data))
    return path


_hq_logins = itertools.count(1)


def hq_settings(broker: "Broker", user: str | None = None):
    """Broker settings for ``user`` (a device or ``hq``, created if missing), or, without
    a user, for a new HQ login of its own: the broker makes the client id the user
    name, so two HQ clients sharing a login would knock each other off."""
    from kiosk import connection

    if user is None and "hq" not in broker.passwords:
        broker.add_user("hq")  # the shipped HQ login, which command-line tests use
    user = user or f"hq-{os.getpid()}-{next(_hq_logins)}"
    password = broker.folder / f"{user}.password"
    if user not in broker.passwords:
        password = broker.add_user(user) if user == "hq" else broker.add_hq_user(user)
    return connection.with_options(connection.parse_url(broker.url), ca=broker.pki["ca"],
                                   username=user, password_file=password)


class Running:
    """Runs device agents and HQ collectors in threads; :meth:`close` (the ``running``
    fixture in tests/conftest.py) stops them all at the end of a test."""

    def __init__(self):
        self.stops: list = []  # (stop, thread), in start order

    def agent(self, cfg_path):
        from kiosk import config
        from sync.agent import Agent

        agent = Agent(config.load(cfg_path))
        thread = threading.Thread(target=agent.run, daemon=True)
        thread.start()
        self.stops.append((agent.stop, thread))
        return agent

    def halt(self, agent) -> None:
        """Stop one agent now and wait for its thread (its network is gone)."""
        for stop, thread in self.stops:
            if stop == agent.stop:
                stop()
                thread.join(15)

    def collector(self, broker, db_path, program):
        from sync.hq.collect import Collector
        from sync.hq.db import HqDb

        stop = threading.Event()
        collector = Collector(HqDb(db_path), program)
        thread = threading.Thread(target=collector.run, args=(hq_settings(broker),),
                                  kwargs={"stop": stop}, daemon=True)
        thread.start()
        wait_until(lambda: collector.client is not None, 15, what="collector connected")
        self.stops.append((stop.set, thread))
        return collector

    def close(self):
        for stop, thread in reversed(self.stops):
            stop()
            thread.join(15)


# -- a small estate of kiosks (tests/security, bench/chaos.py) -------------------------
SALT = b"s" * 32  # make_bundle's default salt


class Peer:
    """A raw MQTT client logged in as someone (a device's stolen credentials, or HQ):
    publishes exactly the bytes it is given and records what it receives."""

    def __init__(self, settings, client_id: str | None = None):
        from sync.hq.common import connect

        self.got: list[tuple[str, bytes]] = []
        self.disconnects = 0
        self.client = connect(settings, client_id or f"peer-{os.getpid()}-{next(_hq_logins)}")
        self.client.on_message = lambda c, u, m: self.got.append((m.topic, m.payload))

        def on_disconnect(*_):
            self.disconnects += 1

        self.client.on_disconnect = on_disconnect

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(15)

    def subscribe(self, *topics: str) -> list:
        """Subscribe and wait for the SUBACK; returns its reason codes."""
        import threading

        done, granted = threading.Event(), []

        def on_subscribe(c, u, mid, reason_codes, props):
            granted.extend(reason_codes)
            done.set()

        self.client.on_subscribe = on_subscribe
        self.client.subscribe([(t, 1) for t in topics])
        wait_until(done.is_set, 15, what="SUBACK")
        return granted

    def close(self) -> None:
        from sync.hq.common import close

        close(self.client)


class Estate:
    """A broker with the shipped config and TLS; devices k1 and k2 in store s1 and k3 in
    s2, enrolled with their own logins and ACL blocks, each with the signed list
    (``codes``) installed; agents and collectors are started on demand and stopped by
    :meth:`close`."""

    DEVICES = {"k1": "s1", "k2": "s1", "k3": "s2"}

    def __init__(self, folder: Path, broker: "Broker", signing, *, program: str = "p1",
                 codes=tuple(f"C{i:04d}" for i in range(2000)), mqtt: dict | None = None):
        from kiosk import config, context
        from kiosk.core import importer
        from kiosk.core.bundle import DirSource

        self.folder, self.broker, self.program = Path(folder), broker, program
        self.bundle = make_bundle(self.folder / "bundle", signing[0], key_id="hq1",
                                  program=program, version=1, codes=codes, per_chunk=1000)
        self.configs: dict[str, Path] = {}
        self.ledgers: dict = {}
        self._stops: list = []
        for name, store in self.DEVICES.items():
            password = broker.add_device(program, store, name)
            self.configs[name] = write_device_config(
                self.folder / name, broker, device=name, store=store, program=program,
                trust={"hq1": signing[1]}, password_file=password, mqtt=mqtt)
            ledger = context.open_ledger(config.load(self.configs[name]))
            importer.import_bundle(ledger.store, DirSource(self.bundle),
                                   {"hq1": signing[0].public_key()}, program)
            self.ledgers[name] = ledger

    # -- logins and wire bodies --------------------------------------------------------
    def creds(self, device: str):
        return hq_settings(self.broker, device)

    def peer(self, who: str | None = None, client_id: str | None = None) -> Peer:
        """A raw client as device ``who``, or as a new HQ login."""
        peer = Peer(self.creds(who) if who else hq_settings(self.broker), client_id)
        self._stops.append((peer.close, None))
        return peer

    def topic(self, device: str, leaf: str) -> str:
        from sync import protocol

        return protocol.device_topic(self.program, self.DEVICES[device], device, leaf)

    def live(self, store: str = "s1") -> str:
        from sync import protocol

        return protocol.live_topic(self.program, store)

    def event(self, code: str, *, device: str, store: str | None = None, kind: str = "redeem",
              voids: str | None = None) -> dict:
        """A well-formed contract-v1 event (as a kiosk would send it)."""
        import uuid

        from kiosk.core import codes, timefmt

        return {"id": str(uuid.uuid4()), "seq": 1, "device": device,
                "store": store or self.DEVICES.get(device, "s1"), "kind": kind, "voids": voids,
                "code_hash": codes.code_hash(SALT, code), "reward_id": "coffee",
                "list_version": 1, "at": timefmt.format(dt.datetime.now(dt.UTC)),
                "clock": "synced", "staff": None}

    # -- running parts -------------------------------------------------------------------
    def agent(self, device: str):
        """The device's sync agent in a thread (``agent.client`` exists before it runs)."""
        import threading

        from kiosk import config
        from sync.agent import Agent

        agent = Agent(config.load(self.configs[device]))
        thread = threading.Thread(target=agent.run, daemon=True)
        thread.start()
        self._stops.append((agent.stop, thread))
        return agent

    def agent_process(self, device: str, log_name: str | None = None) -> subprocess.Popen:
        """``kiosk-sync`` for the device as its own process (stopped by :meth:`close`)."""
        import sys

        env = {**os.environ, "KIOSK_CONFIG": str(self.configs[device])}
        log = open(self.folder / (log_name or f"{device}-agent.log"), "ab")
        proc = subprocess.Popen([sys.executable, "-m", "sync.agent_cli"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        log.close()
        self._stops.append((lambda: _terminate(proc), None))
        return proc

    def connected(self, device: str) -> bool:
        from kiosk.core import syncstate

        return syncstate.read_status(self.ledgers[device].store)["connected"]

    def collector(self, db_path: Path | None = None):
        """An HQ collector (its own HQ login) in a thread, connected when returned."""
        import threading

        from sync.hq.collect import Collector
        from sync.hq.db import HqDb

        collector = Collector(HqDb(db_path or self.folder / "hq.sqlite"), self.program)
        stop = threading.Event()
        thread = threading.Thread(target=collector.run, args=(hq_settings(self.broker),),
                                  kwargs={"stop": stop}, daemon=True)
        thread.start()
        wait_until(lambda: collector.client is not None, 15, what="collector connected")
        self._stops.append((stop.set, thread))
        return collector

    def close(self) -> None:
        for stop, thread in reversed(self._stops):
            stop()
            if thread is not None:
                thread.join(15)
        self._stops.clear()
        for ledger in self.ledgers.values():
            ledger.store.close()


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
