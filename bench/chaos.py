"""Chaos run: redemptions keep flowing while every part of the path fails at random
moments, on a real mosquitto (shipped config, TLS) on loopback. Faults, one a cycle:

* ``agent`` / ``k2``: SIGKILL of k1's (k2's) sync agent, started again at once;
* ``collector``: SIGKILL of ``kiosk-hq collect``, started again;
* ``broker``: a broker restart (clean stop, or SIGKILL: ``--broker-sigkill``);
* ``ui``: SIGKILL of the counter itself - k1's UI controller (with its audit trail)
  confirming typed codes over the real ledger in its own process - mid-confirm or
  between two, started again after ``--ui-restart`` seconds (systemd's RestartSec);
* ``link``: k1's uplink cut for 2-25 s through a relay this script runs between k1's
  agent and the broker: a blackhole (nothing passes, no FIN, no RST, new connections
  unanswered), a half-open connection (the broker's end reset, the kiosk's end silent
  until an RST when the link is back) or one way only (nothing comes back);
* ``disk``: k1's data folder (a tmpfs of its own, mounted here: needs root) filled to
  the last byte for 1-8 s, then freed; confirms meanwhile must be refused on screen.

After ``ui``, ``link`` and ``disk`` it waits until a redemption confirmed after the fault
ended is stored at HQ: the recovery time (no restart by hand: only what systemd does).
k1 also undoes its last confirm now and then; k2 (same store) should learn of k1's
redemptions through HQ's fan-out. After the last cycle everything runs again until k1's
outbox is empty, then it prints:

* faults done, recovery median/max per fault, load average, cycles;
* confirmed (redemptions and voids recorded on k1), shown to staff as Done, at HQ, lost
  (recorded on k1 but not at HQ, or shown as Done but not recorded), double-counted (a
  code counted twice at HQ, or an event at HQ k1 never recorded), voids in the wrong
  state at HQ, confirms refused on screen (disk full) and refused ones recorded anyway;
* fan-out: k1 redemptions k2 does not know of (the relay is best effort: a collector
  killed between storing and relaying leaves k2 to learn it from HQ's conflicts).

Goal (issue 11): 0 lost and 0 double-counted over 200 cycles, recovery after every fault.
Usage: python bench/chaos.py [--cycles N] [--minutes M] [--faults ui,link,...] [--seed S]
       [--broker-sigkill SHARE] [--ui-restart S] [--keep]
"""

import argparse
import errno
import os
import random
import select
import shutil
import signal
import socket
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# bench/ holds a sync.py: keep this folder off sys.path so `sync` is the package.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from kiosk.core import codes  # noqa: E402
from sync.testing import SALT, Broker, Estate, hq_settings, make_signing_key, wait_until  # noqa: E402

CODES = 150_000  # the counter tries about 40 codes a second: enough for 200 cycles
KEEPALIVE_S = 10  # MQTT keepalive of the agents: a dead link is noticed within 2x this
DATA_MB = 96      # k1's data partition (the list of 30,000 codes takes a few MB)


class Collector:
    """``kiosk-hq collect`` in its own process, with one HQ login for its lifetimes."""

    def __init__(self, estate: Estate, db: Path, log: Path):
        hq = hq_settings(estate.broker)
        self.cmd = [sys.executable, "-m", "sync.hq_cli", "collect", "--broker", estate.broker.url,
                    "--ca", str(estate.broker.pki["ca"]), "--username", hq.username,
                    "--password-file", str(estate.broker.folder / f"{hq.username}.password"),
                    "--db", str(db), "--program", estate.program]
        self.log, self.proc = log, None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)

    def supervise(self) -> bool:
        """Like systemd's Restart=always: start it again if it exited (e.g. it found no
        broker at start, exit 1). True if it had to."""
        if self.proc.poll() is None:
            return False
        self.start()
        return True


# The kiosk's own redemption path, as its own process: the UI controller (with the
# audit trail, as kiosk/ui/parts.py assembles it, minus window, camera and printer) over
# the real ledger. Each code is typed in and confirmed with the button; a line on stdout
# says what staff saw: "T i" (about to try code i), "R i id" (Done: recorded), "F i msg"
# (refused, e.g. the disk is full), "V id" (an undo recorded).
UI_CHILD = r"""
import random, sys, time
from kiosk import config, context
from kiosk.core import audit
from kiosk.errors import VoidError
from kiosk.ui import settings as ui_settings
from kiosk.ui.controller import DONE, VERDICT, Controller

cfg = config.load(sys.argv[1])
start, end, rng = int(sys.argv[2]), int(sys.argv[3]), random.Random(int(sys.argv[4]))
ledger = context.open_ledger(cfg)
trail = audit.AuditLog(ledger.store.path, keep=audit.keep_days(cfg))
ui = Controller(ledger, settings=ui_settings.from_config(cfg), audit=trail)
last = None
for i in range(start, end):
    print(f"T {i}", flush=True)
    ui.go_idle()
    ui.scan(f"C{i:05d}", source="keyboard")
    if ui.screen == VERDICT and ui.confirm(source="button"):
        if ui.screen == DONE:
            last = ui.redeemed.redemption_id
            print(f"R {i} {last}", flush=True)
        else:
            print(f"F {i} {ui.record_error}", flush=True)
    if last and rng.random() < 0.05:
        try:
            print(f"V {ledger.void(last)['id']}", flush=True)
        except (VoidError, OSError, RuntimeError) as exc:  # e.g. the disk is full
            print(f"F - undo: {exc}", flush=True)
        last = None
    time.sleep(rng.uniform(0.005, 0.03))
"""


class Ui:
    """The counter at k1 as a child process that SIGKILL can hit mid-confirm; restarted
    like systemd would (``Restart=always``), going on with the next code."""

    def __init__(self, cfg_path: Path, seed: int, log: Path):
        self.cfg_path, self.seed, self.log = cfg_path, seed, log
        self.lock = threading.Lock()
        self.shown: dict[str, float] = {}     # redemption/void id -> when staff saw it
        self.refused: list[tuple[int, str]] = []  # (code index, message)
        self.next_code, self.starts, self.proc = 0, 0, None

    def start(self) -> None:
        self.starts += 1
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", UI_CHILD, str(self.cfg_path), str(self.next_code),
                 str(CODES), str(self.seed + self.starts)],
                stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def _read(self, proc) -> None:
        for line in proc.stdout:
            kind, _, rest = line.rstrip("\n").partition(" ")
            now = time.monotonic()
            with self.lock:
                if kind == "T":
                    self.next_code = int(rest) + 1
                elif kind == "R":
                    self.shown[rest.split()[1]] = now
                elif kind == "V":
                    self.shown[rest] = now
                elif kind == "F":
                    index, _, message = rest.partition(" ")
                    self.refused.append((int(index) if index.isdigit() else -1, message))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()

    def alive(self) -> bool:
        if self.proc.poll() is None:
            return True
        if self.next_code >= CODES:  # not a crash: the list ran out, and the run means nothing after
            raise SystemExit(f"chaos: the counter used all {CODES} codes of the list; raise CODES")
        return False

    def first_shown_after(self, since: float) -> str | None:
        with self.lock:
            later = [(t, i) for i, t in self.shown.items() if t > since]
        return min(later)[1] if later else None


class Link(threading.Thread):
    """k1's uplink: a TCP relay on loopback between k1's agent and the broker that can
    fail the way field links do, without touching anyone else's traffic:

    * ``blackhole``: nothing passes either way, no FIN, no RST; bytes already sent wait
      (as unacknowledged TCP segments would) and new connections get no answer;
    * ``halfopen``: the far end forgets the connection (the broker sees it reset), the
      kiosk's end stays open and silent and gets an RST only when the link is back;
    * ``oneway``: the kiosk's packets reach the broker, nothing comes back (PUBACKs,
      acks and PINGRESPs vanish).
    """

    def __init__(self, target_port: int):
        super().__init__(daemon=True)
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.mode, self.closing = "up", False
        self.cond = threading.Condition()
        self.pairs: list[list] = []  # [kiosk side, broker side or None, alive]

    def set(self, mode: str) -> None:
        with self.cond:
            if mode == "halfopen":
                for pair in self.pairs:
                    _reset(pair[1])  # the broker's end is gone (RST)
                    pair[1] = None
            if mode == "up" and self.mode == "halfopen":
                for pair in self.pairs:
                    if pair[1] is None:
                        _reset(pair[0])  # the kiosk's next packet meets an RST
                        pair[2] = False
            self.mode = mode
            self.cond.notify_all()

    def run(self) -> None:
        while not self.closing:
            with self.cond:
                if self.mode in ("blackhole", "halfopen"):  # SYNs into the void (backlog)
                    self.cond.wait(0.1)
                    continue
            try:
                kiosk, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                broker = socket.create_connection(self.target, timeout=2)
            except OSError:
                _reset(kiosk)  # the broker is down: refused, as it would be without relay
                continue
            pair = [kiosk, broker, True]
            with self.cond:
                self.pairs.append(pair)
            for src, dst, way in ((0, 1, "up"), (1, 0, "down")):
                threading.Thread(target=self._pump, args=(pair, src, dst, way), daemon=True).start()

    def _open(self, way: str) -> bool:
        return self.mode == "up" or (self.mode == "oneway" and way == "up")

    def _pump(self, pair: list, src: int, dst: int, way: str) -> None:
        sock, held = pair[src], b""
        while pair[2] and not self.closing:
            with self.cond:
                while pair[2] and not self.closing and not self._open(way):
                    self.cond.wait(0.2)  # not read: the sender's window fills, as on a cut link
                if not pair[2] or pair[src] is None or pair[dst] is None:
                    break
            try:
                if held:
                    pair[dst].sendall(held)
                    held = b""
                    continue
                if not select.select([sock], [], [], 0.2)[0]:
                    continue
                data = sock.recv(65536)
            except (OSError, ValueError):  # reset, or closed by set("halfopen")
                break
            if not data:
                break
            held = data  # sent when this way is open (now, or when the link is back)
        self._close(pair, way)

    def _close(self, pair: list, way: str) -> None:
        with self.cond:
            if pair[2] and not self.closing and not self._open(way):
                return  # a cut link carries no FIN: the other end notices later
            pair[2] = False
            for end in pair[:2]:
                if end is not None:
                    end.close()
            if pair in self.pairs:
                self.pairs.remove(pair)

    def close(self) -> None:
        self.closing = True
        self.set("up")
        self.listener.close()
        with self.cond:
            for pair in list(self.pairs):
                pair[2] = False
                for end in pair[:2]:
                    if end is not None:
                        end.close()


def _reset(sock) -> None:
    """Close with an RST (SO_LINGER 0) instead of a FIN."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


class DataPartition:
    """k1's data folder on its own small tmpfs, filled to the last byte on demand."""

    def __init__(self, path: Path, size_mb: int):
        self.path, self.filler, self.mounted = path, path / "chaos-filler", False
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            self.problem = "not root: cannot mount a tmpfs"
            return
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m",
                               f"kiosk-chaos-{os.getpid()}", str(path)],
                              capture_output=True, text=True)
        self.mounted = proc.returncode == 0
        self.problem = "" if self.mounted else proc.stderr.strip()

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 1 << 14, 512, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        if self.mounted:
            self.free()
            subprocess.run(["umount", "-l", str(self.path)], check=False)
            self.mounted = False


def kill_agent(estate, procs, name):
    procs[name].send_signal(signal.SIGKILL)
    procs[name].wait()
    procs[name] = estate.agent_process(name)


def restart_broker(broker: Broker, rng: random.Random, sigkill_share: float) -> None:
    if rng.random() < sigkill_share:
        broker.proc.send_signal(signal.SIGKILL)
        broker.proc.wait()
        broker.proc = None
    else:
        broker.stop()
    time.sleep(rng.uniform(0, 0.5))
    broker.start()


def at_hq(db: Path, event_id: str) -> bool:
    if not db.exists():
        return False
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("SELECT 1 FROM events WHERE id = ?", (event_id,)).fetchone() is not None
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def recovery(ui: Ui, db: Path, since: float, keep_going, timeout: float) -> float | None:
    """Seconds from the end of a fault (``since``) until a redemption staff confirmed after
    it is stored at HQ: the counter, the agent and the link all work again. None if not
    within ``timeout``."""
    deadline = since + timeout
    while time.monotonic() < deadline:
        keep_going()
        first = ui.first_shown_after(since)
        if first is not None and at_hq(db, first):
            return time.monotonic() - since
        time.sleep(0.1)
    return None


def report(estate: Estate, db: Path, ui: Ui, cycles: int, seconds: float) -> dict:
    k1 = sqlite3.connect(estate.folder / "k1" / "data" / "kiosk.sqlite")
    local = {r[0]: r for r in k1.execute(
        "SELECT id, kind, voids, code_hash, voided_by FROM redemptions WHERE origin = 'local'")}
    hq = sqlite3.connect(db)
    at = {r[0]: r for r in hq.execute(
        "SELECT id, kind, voids, code_hash, voided_by FROM events WHERE device = 'k1'")}
    over = hq.execute("SELECT count(*) FROM conflicts WHERE kind = 'over_redeemed'").fetchone()[0]
    wrong_void = sum(1 for i, r in local.items()
                     if r[1] == "redeem" and i in at and bool(r[4]) != bool(at[i][4]))
    k2 = sqlite3.connect(estate.folder / "k2" / "data" / "kiosk.sqlite")
    known_k2 = {r[0] for r in k2.execute("SELECT id FROM redemptions WHERE device = 'k1'")}
    redeemed_hashes = {r[3] for r in local.values() if r[1] == "redeem"}
    refused = [i for i, _ in ui.refused if i >= 0]
    figures = {
        "cycles": cycles, "confirmed": len(local), "shown_to_staff": len(ui.shown),
        "at_hq": len(set(local) & set(at)),
        "lost": len(set(local) - set(at)) + len(set(ui.shown) - set(local)),
        "double_counted": over + len(set(at) - set(local)),
        "void_state_wrong": wrong_void,
        "refused_on_screen": len(ui.refused),
        "refused_but_recorded": sum(1 for i in refused
                                    if codes.code_hash(SALT, f"C{i:05d}") in redeemed_hashes),
        "fanout_missing_at_k2": sum(1 for i in local if i not in known_k2),
        "seconds": round(seconds, 1),
    }
    for conn in (k1, hq, k2):
        conn.close()
    return figures


FAULTS = {"agent": 0.22, "collector": 0.16, "broker": 0.10, "k2": 0.05,
          "ui": 0.19, "link": 0.16, "disk": 0.12}


def pick(rng: random.Random, faults: dict) -> str:
    roll, total = rng.random() * sum(faults.values()), 0.0
    for name, weight in faults.items():
        total += weight
        if roll < total:
            return name
    return name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=0,
                    help="stop starting cycles after this long (default: no limit)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--faults", default=",".join(FAULTS),
                    help=f"comma-separated subset of {','.join(FAULTS)} (default: all)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs, databases)")
    ap.add_argument("--broker-sigkill", type=float, default=0.5, metavar="SHARE",
                    help="share of broker restarts done with SIGKILL (default 0.5)")
    ap.add_argument("--ui-restart", type=float, default=0.5, metavar="S",
                    help="seconds before a killed UI starts again (systemd: RestartSec)")
    ap.add_argument("--recovery-timeout", type=float, default=120, metavar="S")
    args = ap.parse_args()
    faults = {name: FAULTS[name] for name in args.faults.split(",") if name}
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="kiosk-chaos-"))
    print(f"chaos: {args.cycles} cycles, seed {args.seed}, faults {','.join(faults)}, "
          f"work folder {tmp}")
    signing = make_signing_key(tmp / "keys")
    partition = DataPartition(tmp / "estate" / "k1" / "data", DATA_MB)
    if "disk" in faults and not partition.mounted:
        print(f"chaos: no disk-full faults ({partition.problem})")
        faults.pop("disk")
    recoveries: dict[str, list] = {name: [] for name in ("ui", "link", "disk")}
    stuck: dict[str, int] = dict.fromkeys(recoveries, 0)
    actions = dict.fromkeys([*faults, "supervisor", "ui died", "agent died"], 0)
    modes: dict[str, int] = {}
    loads: list[float] = []
    ui = None
    try:
        with Broker(tmp / "broker") as broker:
            estate = Estate(tmp / "estate", broker, signing,
                            codes=[f"C{i:05d}" for i in range(CODES)],
                            mqtt={"ack_timeout_seconds": 2, "peer_budget_per_hour": 1_000_000,
                                  "heartbeat_seconds": 5, "keepalive": KEEPALIVE_S})
            link = Link(broker.port)
            link.start()
            cfg = estate.configs["k1"]  # k1's agent goes through the link
            cfg.write_text(cfg.read_text().replace(broker.url, f"mqtts://127.0.0.1:{link.port}"))
            db = tmp / "hq.sqlite"
            collector = Collector(estate, db, tmp / "collector.log")
            collector.start()
            procs = {name: estate.agent_process(name) for name in ("k1", "k2")}
            ui = Ui(cfg, args.seed, tmp / "ui.log")
            ui.start()

            def keep_going():  # what systemd does (Restart=always) for every part
                actions["supervisor"] += collector.supervise()
                if not ui.alive():
                    actions["ui died"] += 1
                    ui.start()
                for name, proc in procs.items():
                    if proc.poll() is not None:  # exited by itself: a finding, see its log
                        actions["agent died"] += 1
                        procs[name] = estate.agent_process(name)

            started = time.monotonic()
            cycles = 0
            try:
                for cycles in range(1, args.cycles + 1):  # noqa: B007 (reported below)
                    if args.minutes and time.monotonic() - started > args.minutes * 60:
                        cycles -= 1
                        break
                    time.sleep(rng.uniform(0.1, 1.0))
                    keep_going()
                    loads.append(os.getloadavg()[0])
                    fault = pick(rng, faults)
                    actions[fault] += 1
                    if fault == "agent":
                        kill_agent(estate, procs, "k1")
                    elif fault == "k2":
                        kill_agent(estate, procs, "k2")
                    elif fault == "collector":
                        collector.kill()
                        time.sleep(rng.uniform(0, 0.3))
                        collector.start()
                    elif fault == "broker":
                        restart_broker(broker, rng, args.broker_sigkill)
                    else:
                        if fault == "ui":
                            ui.kill()
                            end = time.monotonic()
                            time.sleep(args.ui_restart)
                            ui.start()
                        elif fault == "link":
                            mode = rng.choice(("blackhole", "blackhole", "halfopen", "oneway"))
                            modes[mode] = modes.get(mode, 0) + 1
                            link.set(mode)
                            time.sleep(rng.uniform(2, 25))
                            link.set("up")
                            end = time.monotonic()
                        else:  # disk
                            partition.fill()
                            time.sleep(rng.uniform(1, 8))
                            partition.free()
                            end = time.monotonic()
                        took = recovery(ui, db, end, keep_going, args.recovery_timeout)
                        if took is None:
                            stuck[fault] += 1
                            print(f"chaos: cycle {cycles}: no recovery {args.recovery_timeout:.0f} s "
                                  f"after {fault}", flush=True)
                        else:
                            recoveries[fault].append(took)
                    if cycles % 20 == 0:
                        print(f"chaos: {cycles} cycles, {len(ui.shown)} confirmed on screen, "
                              f"{time.monotonic() - started:.0f} s", flush=True)
                ui.stop()
                # a fresh agent resends at once (no ack backoff carried over from the chaos)
                kill_agent(estate, procs, "k1")

                def drained():
                    actions["supervisor"] += collector.supervise()
                    return estate.ledgers["k1"].outbox_depth() == 0

                wait_until(drained, 300, interval=0.2, what="k1's outbox drained after the chaos")
                time.sleep(3)  # the last relayed fan-out reaches k2
            finally:
                ui.stop()
                collector.stop()
                for proc in procs.values():
                    proc.terminate()
                    proc.wait(15)
                link.close()
                estate.close()
            figures = report(estate, db, ui, cycles, time.monotonic() - started)
    finally:
        if ui is not None:
            ui.stop()
        partition.unmount()
    print("faults: " + ", ".join(f"{k} {v}" for k, v in actions.items())
          + (f" (link: {', '.join(f'{k} {v}' for k, v in modes.items())})" if modes else ""))
    for fault, times in recoveries.items():
        if times or stuck[fault]:
            print(f"recovery after {fault}: median {statistics.median(times) if times else 0:.1f} s, "
                  f"max {max(times, default=0):.1f} s, not recovered {stuck[fault]}")
    print(f"load average (1 min) during the run: median {statistics.median(loads or [0]):.1f}, "
          f"max {max(loads, default=0):.1f}; UI starts {ui.starts}")
    print("  ".join(f"{k}={v}" for k, v in figures.items()))
    ok = (figures["lost"] == 0 and figures["double_counted"] == 0
          and figures["void_state_wrong"] == 0 and figures["refused_but_recorded"] == 0
          and not any(stuck.values()))
    print("goal (0 lost, 0 double-counted, recovered after every fault): "
          + ("met" if ok else "NOT met"))
    if not args.keep and ok:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
