"""Sync benchmark: a real mosquitto on loopback (TLS, shipped config), started here.

Prints:
* seconds for the agent to drain a 10,000-event backlog and get every ack
  (stored at HQ by ``kiosk-hq collect`` in its own process), and events/s;
* seconds from ``kiosk-hq publish`` of a 1,000,000-code bundle to a usable list on
  the device (agent in its own process, as on the kiosk);
* the agent's resident memory (peak and current).

* the delta fan-out (``--fanout``): a 10,000-record delta published once, received
  by ``--devices`` devices (each its own TLS connection and login; ``--agents`` of
  them real ``kiosk-sync`` agents in their own processes, the rest download-only
  clients that fetch the head and every chunk like an agent), and how long a device
  takes to import it (the agent's child process).

Goals (issue 6): backlog < 2 s, million-code list < 20 s, agent RSS < 60 MB;
(issue 15) a 10,000-record delta usable on 100 devices < 5 s on loopback.
Usage: python bench/sync.py [--events N] [--codes N] | --fanout [--devices 100] [--agents 10]
"""

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# This file is named sync.py: keep its folder off sys.path so `sync` is the package.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from kiosk import (  # noqa: E402
    config,
    connection,  # noqa: E402
    context,
)
from kiosk.core import importer  # noqa: E402
from kiosk.core.bundle import DirSource  # noqa: E402
from sync import protocol  # noqa: E402
from sync.hq import publish as hq_publish  # noqa: E402
from sync.testing import (  # noqa: E402
    Broker,
    hq_settings,
    make_bundle,
    make_signing_key,
    write_device_config,
)

PROGRAM = "bench"


def rss_mb(pid: int) -> tuple[float, float]:
    """(peak, current) resident set size of a process in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmHWM"].split()[0]) / 1024, int(fields["VmRSS"].split()[0]) / 1024


def poll(predicate, timeout: float, interval: float = 0.002):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.perf_counter()
        time.sleep(interval)
    raise SystemExit(f"bench: timed out after {timeout:.0f} s")


def backlog(ledger, n: int) -> None:
    """n confirmed redemptions recorded offline (the real confirm path)."""
    for i in range(n):
        ledger.confirm(f"BENCH{i:07d}")


def load() -> str:
    return "load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Downloader:
    """A device that only downloads: on a head of ``version`` it subscribes to the chunks
    the manifest names and records when the last byte arrived."""

    def __init__(self, broker, name: str, password: Path, version: int):
        settings = connection.with_options(connection.parse_url(broker.url), ca=broker.pki["ca"],
                                           username=name, password_file=password)
        self.version, self.pending, self.done_at = version, None, None
        self.bytes, self.done = 0, threading.Event()
        self.client = connection.make_client(settings, f"dl-{name}")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            protocol.manifest_topic(PROGRAM), 1)
        self.client.connect(settings.host, settings.port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg):
        if msg.topic == protocol.manifest_topic(PROGRAM):
            raw, _sig = protocol.decode_manifest(msg.payload)
            from kiosk.core import bundle
            manifest = bundle.parse_manifest(raw)
            if manifest.version == self.version and self.pending is None:
                self.bytes += len(msg.payload)
                self.pending = {c.sha256 for c in manifest.chunks}
                client.subscribe([(protocol.chunk_topic(PROGRAM, sha), 1) for sha in self.pending])
        elif self.pending is not None and msg.payload:
            self.pending.discard(msg.topic.rsplit("/", 1)[1])
            self.bytes += len(msg.payload)
            if not self.pending:
                self.done_at = time.perf_counter()
                self.done.set()

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def fanout(args) -> int:
    """A 10,000-record delta to many devices."""
    tmp = Path(tempfile.mkdtemp(prefix="kiosk-bench-fanout-"))
    key, pub = make_signing_key(tmp / "keys")
    with Broker(tmp / "broker") as broker:
        hq = hq_settings(broker)
        base = make_bundle(tmp / "v1", key, key_id="hq1", program=PROGRAM, version=1,
                           codes=[f"F{i:08d}" for i in range(args.base)])
        delta = make_bundle(tmp / "v2", key, key_id="hq1", program=PROGRAM, version=2,
                            base_version=1, codes=[f"D{i:08d}" for i in range(args.delta)])
        hq_publish.publish(hq, base, log=lambda *_: None)
        agents, ledgers, downloaders = [], [], []
        t = time.perf_counter()
        try:
            for i in range(args.devices):
                name = f"d{i:03d}"
                password = broker.add_device(PROGRAM, "s1", name)
                if i < args.agents:
                    cfg_path = write_device_config(tmp / name, broker, device=name, store="s1",
                                                   program=PROGRAM, trust={"hq1": pub},
                                                   password_file=password,
                                                   mqtt={"heartbeat_seconds": 30})
                    ledgers.append(context.open_ledger(config.load(cfg_path)))
                    agents.append(subprocess.Popen(
                        [sys.executable, "-m", "sync.agent_cli"],
                        env={**os.environ, "KIOSK_CONFIG": str(cfg_path)},
                        stdout=open(tmp / f"{name}.log", "w"), stderr=subprocess.STDOUT))
                else:
                    downloaders.append(Downloader(broker, name, password, 2))
            for ledger in ledgers:
                poll(lambda ledger=ledger: (c := ledger.store.current_list()) is not None
                     and c.version == 1, 300, interval=0.05)
            print(f"setup: {args.devices} devices connected, {args.agents} agents on version 1 "
                  f"({args.base:,} codes) in {time.perf_counter() - t:.0f} s")
            size = sum(f.stat().st_size for f in delta.iterdir())
            t0 = time.perf_counter()
            hq_publish.publish(hq, delta, log=lambda *_: None)
            for d in downloaders:
                if not d.done.wait(300):
                    raise SystemExit("bench: a downloader did not get the delta")
            t_net = max((d.done_at for d in downloaders), default=t0) - t0
            done_at = []
            for ledger in ledgers:
                done_at.append(poll(lambda ledger=ledger: ledger.store.current_list().version == 2,
                                    300, interval=0.01))
                assert ledger.check(f"D{args.delta - 1:08d}").verdict == "ready"
            t_agents = max(done_at) - t0
        finally:
            for agent in agents:
                agent.terminate()
            for agent in agents:
                agent.wait(15)
            for d in downloaders:
                d.close()
        # the import as a device's agent runs it, alone on the machine
        one = tmp / "solo"
        cfg_path = write_device_config(one, broker, device="solo", store="s1", program=PROGRAM,
                                       trust={"hq1": pub}, password_file=None)
        solo = context.open_ledger(config.load(cfg_path))
        importer.import_bundle(solo.store, DirSource(base), {"hq1": key.public_key()}, PROGRAM)
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "sync.list_import", str(cfg_path), str(delta)],
                             capture_output=True, text=True, check=True)
        t_import = time.perf_counter() - t
        assert '"installed"' in out.stdout, out.stdout
    print(f"delta fan-out: {args.delta:,} records ({size / 1e3:.0f} kB) published once; "
          f"all {len(downloaders)} download-only devices had every byte after {t_net:.2f} s")
    print(f"  import on one device (child process, as the agent runs it): {t_import:.2f} s")
    print(f"  => usable on every device after about {t_net + t_import:.2f} s when each device "
          f"has its own CPU (goal < 5 s)")
    print(f"  {len(ledgers)} real agents sharing this machine: all usable after {t_agents:.2f} s")
    print(f"machine: {os.cpu_count()} cores, {load()} (figures scale with other load)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--codes", type=int, default=1_000_000)
    ap.add_argument("--fanout", action="store_true", help="only the delta fan-out figure")
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--agents", type=int, default=10)
    ap.add_argument("--delta", type=int, default=10_000)
    ap.add_argument("--base", type=int, default=100_000, help="codes of the list the delta is on")
    args = ap.parse_args()
    if args.fanout:
        return fanout(args)
    tmp = Path(tempfile.mkdtemp(prefix="kiosk-bench-sync-"))
    key, pub = make_signing_key(tmp / "keys")
    with Broker(tmp / "broker") as broker:
        hq = hq_settings(broker)
        password = broker.add_device(PROGRAM, "s1", "k1")
        cfg_path = write_device_config(tmp / "k1", broker, device="k1", store="s1",
                                       program=PROGRAM, trust={"hq1": pub},
                                       password_file=password, mqtt={"heartbeat_seconds": 30})
        ledger = context.open_ledger(config.load(cfg_path))
        small = make_bundle(tmp / "small", key, key_id="hq1", program=PROGRAM, version=1,
                            codes=[f"BENCH{i:07d}" for i in range(args.events)])
        importer.import_bundle(ledger.store, DirSource(small), {"hq1": key.public_key()}, PROGRAM)
        t = time.perf_counter()
        backlog(ledger, args.events)
        print(f"setup: {args.events:,} redemptions recorded offline in {time.perf_counter() - t:.1f} s")

        hq_cmd = [sys.executable, "-m", "sync.hq_cli", "collect", "--broker", broker.url,
                  "--ca", str(broker.pki["ca"]), "--username", "hq", "--password-file",
                  str(broker.folder / "hq.password"), "--db", str(tmp / "hq.sqlite"),
                  "--program", PROGRAM]
        collector = subprocess.Popen(hq_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        time.sleep(1.5)  # setup only: let the collector connect and subscribe before timing
        env = {**os.environ, "KIOSK_CONFIG": str(cfg_path), **dict(a.split("=", 1) for a in os.environ.get("BENCH_AGENT_ENV", "").split() if a)}
        agent = subprocess.Popen([sys.executable, "-m", "sync.agent_cli"], env=env,
                                 stdout=open(tmp / "agent.log", "w"), stderr=subprocess.STDOUT)
        try:
            store = ledger.store
            t0 = poll(lambda: store.get_meta("sync.connected") == "1", 30)
            t1 = poll(lambda: ledger.outbox_depth() == 0, 120)
            drain = t1 - t0
            stored = sqlite3.connect(tmp / "hq.sqlite").execute("SELECT count(*) FROM events").fetchone()[0]
            print(f"agent RSS after the backlog: {rss_mb(agent.pid)[1]:.0f} MB")
            print(f"backlog: {args.events:,} events drained, stored at HQ ({stored:,}) and acked "
                  f"in {drain:.2f} s = {args.events / drain:,.0f} events/s (goal < 2 s)")

            t = time.perf_counter()
            big = make_bundle(tmp / "big", key, key_id="hq1", program=PROGRAM, version=2,
                              codes=(f"M{i:09d}" for i in range(args.codes)))
            size = sum(f.stat().st_size for f in big.iterdir()) / 1e6
            print(f"setup: {args.codes:,}-code bundle ({size:.0f} MB) signed in "
                  f"{time.perf_counter() - t:.1f} s")
            t0 = time.perf_counter()
            hq_publish.publish(hq, big, log=lambda *_: None)
            t_pub = time.perf_counter()
            t_got = poll(lambda: (store.get_meta("sync.list_state") or "").startswith("importing"),
                         300, interval=0.01)
            t1 = poll(lambda: (c := store.current_list()) is not None and c.version == 2, 300,
                      interval=0.02)
            assert ledger.check(f"M{args.codes - 1:09d}").verdict == "ready"
            print(f"list: {args.codes:,} codes from publish to usable on the device in "
                  f"{t1 - t0:.1f} s (goal < 20 s): publish {t_pub - t0:.1f} s, all chunks on the "
                  f"device after {t_got - t0:.1f} s, import {t1 - t_got:.1f} s")
            peak, now = rss_mb(agent.pid)
            print(f"agent RSS: peak {peak:.0f} MB, now {now:.0f} MB (goal < 60 MB)")
            print(f"machine: {os.cpu_count()} cores, {load()} (figures scale with other load)")
        finally:
            agent.terminate()
            collector.terminate()
            agent.wait(15)
            collector.wait(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
