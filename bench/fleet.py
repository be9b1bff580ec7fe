"""Fleet benchmark: a day's outage ends and every kiosk sends its backlog at once.

    python bench/fleet.py [--kiosks 1000] [--events 50] [--collectors 4] [--db postgresql|sqlite]

Everything is real and on this machine: a TLS mosquitto with the shipped config and
one login per kiosk (``sync.testing.Broker``), a throwaway PostgreSQL cluster
(``sync.testing_pg``), ``--collectors`` ``kiosk-hq collect`` processes in one
shared-subscription group, and ``--kiosks`` MQTT clients in this process (paho, one
``select`` loop for all sockets), each publishing ``--events`` redemptions as one
batch on its own topic and waiting for HQ's ack.

Prints: connect time, events stored and acked per second, time until every kiosk's
outbox is empty, ack latency p50/p99 and how the acks spread over the run, the CPU
seconds of broker, collectors and the simulated kiosks, the load average, broker and
collector peak RSS. Goals (issue
17): 50,000 events drained in under 30 s, ack p99 under 2 s.
"""

import argparse
import os
import resource
import secrets
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kiosk import connection  # noqa: E402
from kiosk.core import ids  # noqa: E402
from sync import protocol, testing, testing_pg  # noqa: E402
from sync.hq import credentials  # noqa: E402
from sync.hq.db import HqDb  # noqa: E402

PROGRAM, GROUP = "fleet", f"bench-{secrets.token_hex(6)}"


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def raise_fd_limit(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, n)
    if hard != resource.RLIM_INFINITY and want > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))  # root may raise it
            return
        except (ValueError, OSError):
            want = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def enroll(broker: testing.Broker, kiosks: int) -> dict[str, str]:
    """Passwords and ACL blocks for every kiosk, written at once (one reload)."""
    passwords = {f"k{i:04d}": credentials.new_password() for i in range(kiosks)}
    lines = [f"{dev}:{credentials.password_hash(pw)}" for dev, pw in passwords.items()]
    with open(broker.folder / "passwd", "a") as f:
        f.write("\n".join(lines) + "\n")
    with open(broker.folder / "acl", "a") as f:
        for i, dev in enumerate(passwords):
            f.write("\n" + credentials.device_acl(PROGRAM, f"s{i % 50:02d}", dev))
    broker.reload()
    return passwords


class Kiosk:
    def __init__(self, index: int, device: str, password: str, broker: testing.Broker, n: int):
        self.device, self.store = device, f"s{index % 50:02d}"
        settings = connection.with_options(connection.parse_url(broker.url), ca=broker.pki["ca"],
                                           username=device)
        self.client = connection.make_client(settings, device)
        self.client.username_pw_set(device, password)
        self.client.on_message = self.on_message
        self.client.on_connect = self.on_connect
        self.ready = False
        self.events = [self.event(s) for s in range(1, n + 1)]
        self.sent_at = self.acked_at = None
        self.acked: set[str] = set()

    def event(self, seq: int) -> dict:
        return {"id": ids.uuid7(), "seq": seq, "device": self.device, "store": self.store,
                "kind": "redeem", "voids": None, "code_hash": secrets.token_hex(32),
                "reward_id": "coffee", "list_version": 1, "at": "2026-12-01T10:00:00Z",
                "clock": "synced", "staff": None}

    def connect(self, broker: testing.Broker) -> None:
        self.client.connect("127.0.0.1", broker.port, 60)

    def on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            client.subscribe(protocol.device_topic(PROGRAM, self.store, self.device, "acks"), 1)
            self.ready = True

    def publish(self) -> None:
        self.sent_at = time.monotonic()
        self.client.publish(protocol.device_topic(PROGRAM, self.store, self.device, "redemptions"),
                            protocol.encode_events(self.events), qos=1)

    def on_message(self, client, userdata, msg) -> None:
        ids_, _conflicts = protocol.decode_ack(msg.payload)
        self.acked.update(ids_)
        if self.acked_at is None and len(self.acked) >= len(self.events):
            self.acked_at = time.monotonic()


class Pump:
    """Drives every client's socket from one epoll loop (select() stops at fd 1024)."""

    def __init__(self, kiosks: list[Kiosk]):
        self.kiosks, self.poll = kiosks, select.epoll()
        self.by_fd: dict[int, Kiosk] = {}
        self.load_max = os.getloadavg()[0]

    def _register(self) -> None:
        for k in self.kiosks:
            sock = k.client.socket()
            if sock is not None and self.by_fd.get(sock.fileno()) is not k:
                self.by_fd[sock.fileno()] = k
                self.poll.register(sock.fileno(), select.EPOLLIN)

    def step(self, wait: float) -> None:
        """Read what arrived (waiting up to ``wait`` s), write what is queued."""
        self._register()
        for fd, _ in self.poll.poll(wait):
            client = self.by_fd[fd].client
            client.loop_read()
            sock = client.socket()
            while sock is not None and hasattr(sock, "pending") and sock.pending():
                client.loop_read()  # TLS records already decrypted: epoll sees no more
        for k in self.kiosks:
            if k.client.want_write():
                k.client.loop_write()

    def run(self, until, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        last_misc = 0.0
        while time.monotonic() < deadline:
            if until():
                return True
            self.step(0.05)
            if time.monotonic() - last_misc > 1:
                for k in self.kiosks:
                    k.client.loop_misc()
                last_misc = time.monotonic()
                self.load_max = max(self.load_max, os.getloadavg()[0])
        return until()


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (PostgreSQL's backends)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            pass
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def ack_histogram(kiosks: list[Kiosk], t1: float) -> list[int]:
    """How many kiosks got their ack in each second after the publish."""
    counts: list[int] = []
    for k in kiosks:
        if k.acked_at:
            second = int(k.acked_at - t1)
            counts += [0] * (second + 1 - len(counts))
            counts[second] += 1
    return counts


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kiosks", type=int, default=1000)
    ap.add_argument("--events", type=int, default=50)
    ap.add_argument("--collectors", type=int, default=4)
    ap.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()
    raise_fd_limit(args.kiosks * 2 + 256)
    work = Path(tempfile.mkdtemp(prefix="kiosk-fleet-"))
    pg = testing_pg.Postgres().start() if args.db == "postgresql" else None
    url = pg.create_db("fleet") if pg else f"sqlite:///{work / 'hq.sqlite'}"
    broker = testing.Broker(work / "broker").start()
    procs: list[subprocess.Popen] = []
    try:
        HqDb(url).close()  # migrate once before the collectors race to
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for _ in range(args.collectors):
            login = testing.hq_settings(broker).username  # each its own (client id = login)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "sync.hq_cli", "collect", "--db", url, "--broker",
                 broker.url, "--ca", str(broker.pki["ca"]), "--username", login,
                 "--password-file", str(broker.folder / f"{login}.password"), "--group", GROUP],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(3)  # collectors subscribed
        passwords = enroll(broker, args.kiosks)
        kiosks = [Kiosk(i, dev, pw, broker, args.events) for i, (dev, pw) in enumerate(passwords.items())]
        t0 = time.monotonic()
        for k in kiosks:
            k.connect(broker)
            k.client.loop_write()
        pump = Pump(kiosks)
        pump.run(lambda: all(k.ready for k in kiosks), 120)  # CONNACKs
        pump.run(lambda: False, 1)  # SUBACKs
        connected = time.monotonic() - t0
        pids = {"broker": broker.proc.pid, **{f"collector {i + 1}": p.pid for i, p in enumerate(procs)}}
        if pg:
            master = int((pg.data / "postmaster.pid").read_text().split()[0])
            pids.update({f"pg{n}": p for n, p in enumerate([master, *children(master)])})
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        load0, pump.load_max = os.getloadavg()[0], os.getloadavg()[0]
        t1 = time.monotonic()
        for start in range(0, len(kiosks), 25):  # all at once, as far as one process can:
            for k in kiosks[start:start + 25]:   # the acks of the first are read meanwhile
                k.publish()
            pump.step(0)
        done = pump.run(lambda: all(k.acked_at for k in kiosks), args.timeout)
        drained = time.monotonic() - t1
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
        cpu["postgresql"] = sum(cpu.pop(n) for n in [n for n in cpu if n.startswith("pg")])
        cpu["kiosks (this process)"] = (self1.ru_utime + self1.ru_stime
                                        - self0.ru_utime - self0.ru_stime)
        total = args.kiosks * args.events
        acked = sum(len(k.acked) for k in kiosks)
        latencies = [k.acked_at - k.sent_at for k in kiosks if k.acked_at]
        db = HqDb(url)
        stored = db.count("events")
        db.close()
        print(f"fleet: {args.kiosks} kiosks x {args.events} events, {args.collectors} collectors, "
              f"{args.db}")
        print(f"  connect (TLS, own login each): {connected:.1f} s")
        print(f"  drained: {'yes' if done else 'NO'}; {acked:,}/{total:,} acked, {stored:,} stored "
              f"in {drained:.1f} s = {acked / drained:,.0f} events/s (goal: 50,000 in < 30 s)")
        print(f"  ack latency per kiosk batch: p50 {percentile(latencies, 0.5):.2f} s, "
              f"p99 {percentile(latencies, 0.99):.2f} s (goal p99 < 2 s)")
        first = min((k.acked_at - t1 for k in kiosks if k.acked_at), default=float("nan"))
        print(f"  first ack after {first:.2f} s; acks per second of the run: "
              + " ".join(str(n) for n in ack_histogram(kiosks, t1)))
        print("  CPU seconds during the drain: "
              + ", ".join(f"{name} {sec:.1f}" for name, sec in cpu.items()))
        print(f"  load average (1 min) at start {load0:.1f}, highest during the run "
              f"{pump.load_max:.1f} ({os.cpu_count()} cores)")
        print(f"  peak RSS: broker {peak_rss_mb(broker.proc.pid):.0f} MB, collectors "
              + ", ".join(f"{peak_rss_mb(p.pid):.0f}" for p in procs) + " MB")
        return 0 if done else 1
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        broker.stop()
        if pg:
            pg.stop()


if __name__ == "__main__":
    sys.exit(main())
