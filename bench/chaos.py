"""Chaos run: redemptions keep flowing while the sync agent and the HQ collector are
killed with SIGKILL at random moments and the broker is restarted (clean stop or
SIGKILL), on a real mosquitto (shipped config, TLS) on loopback.

The counter is kiosk k1 (store s1) confirming codes through the real ledger, and now
and then undoing its last one; k2 in the same store runs its agent too and should
learn of k1's redemptions through HQ's fan-out. After the last cycle everything runs
again until k1's outbox is empty, then it prints:

* cycles, confirmed (redemptions and voids recorded on k1), at HQ, lost (recorded on
  k1 but not at HQ), double-counted (a code counted twice at HQ, or an event at HQ
  that k1 never recorded), void state wrong at HQ;
* fan-out: k1 redemptions k2 does not know of (the relay is best effort: a collector
  killed between storing and relaying leaves k2 to learn it from HQ's conflicts).

Goal (issue 11): 0 lost and 0 double-counted over 200 cycles.
Usage: python bench/chaos.py [--cycles N] [--seed S] [--broker-sigkill SHARE] [--keep]
"""

import argparse
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# bench/ holds a sync.py: keep this folder off sys.path so `sync` is the package.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from kiosk import config, context  # noqa: E402
from kiosk.errors import VoidError  # noqa: E402
from sync.testing import Broker, Estate, hq_settings, make_signing_key, wait_until  # noqa: E402

CODES = 30_000


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


class Counter(threading.Thread):
    """Staff at k1: a confirm every few ms, and now and then an undo of the last one."""

    def __init__(self, cfg_path: Path, seed: int):
        super().__init__(daemon=True)
        self.cfg_path, self.rng = cfg_path, random.Random(seed)
        self.stop_event = threading.Event()
        self.confirms = self.voids = 0

    def run(self) -> None:
        ledger = context.open_ledger(config.load(self.cfg_path))
        try:
            last = None
            for i in range(CODES):
                if self.stop_event.is_set():
                    return
                result = ledger.confirm(f"C{i:05d}")
                if result.redemption_id:
                    self.confirms += 1
                    last = result.redemption_id
                if last and self.rng.random() < 0.05:
                    try:
                        ledger.void(last)
                        self.voids += 1
                    except VoidError:
                        pass
                    last = None
                self.stop_event.wait(self.rng.uniform(0.005, 0.03))
        finally:
            ledger.store.close()


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


def report(estate: Estate, db: Path, cycles: int, seconds: float) -> dict:
    k1 = sqlite3.connect(estate.folder / "k1" / "data" / "kiosk.sqlite")
    local = {r[0]: r for r in k1.execute(
        "SELECT id, kind, voids, code_hash, voided_by FROM redemptions WHERE origin = 'local'")}
    hq = sqlite3.connect(db)
    at_hq = {r[0]: r for r in hq.execute(
        "SELECT id, kind, voids, code_hash, voided_by FROM events WHERE device = 'k1'")}
    over = hq.execute("SELECT count(*) FROM conflicts WHERE kind = 'over_redeemed'").fetchone()[0]
    wrong_void = sum(1 for i, r in local.items()
                     if r[1] == "redeem" and i in at_hq and bool(r[4]) != bool(at_hq[i][4]))
    k2 = sqlite3.connect(estate.folder / "k2" / "data" / "kiosk.sqlite")
    known_k2 = {r[0] for r in k2.execute("SELECT id FROM redemptions WHERE device = 'k1'")}
    figures = {
        "cycles": cycles, "confirmed": len(local), "at_hq": len(set(local) & set(at_hq)),
        "lost": len(set(local) - set(at_hq)),
        "double_counted": over + len(set(at_hq) - set(local)),
        "void_state_wrong": wrong_void,
        "fanout_missing_at_k2": sum(1 for i in local if i not in known_k2),
        "seconds": round(seconds, 1),
    }
    for conn in (k1, hq, k2):
        conn.close()
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs, databases)")
    ap.add_argument("--broker-sigkill", type=float, default=0.5, metavar="SHARE",
                    help="share of broker restarts done with SIGKILL (default 0.5)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="kiosk-chaos-"))
    print(f"chaos: {args.cycles} cycles, seed {args.seed}, work folder {tmp}")
    signing = make_signing_key(tmp / "keys")
    with Broker(tmp / "broker") as broker:
        estate = Estate(tmp / "estate", broker, signing, codes=[f"C{i:05d}" for i in range(CODES)],
                        mqtt={"ack_timeout_seconds": 2, "peer_budget_per_hour": 1_000_000,
                              "heartbeat_seconds": 5})
        db = tmp / "hq.sqlite"
        collector = Collector(estate, db, tmp / "collector.log")
        collector.start()
        procs = {name: estate.agent_process(name) for name in ("k1", "k2")}
        counter = Counter(estate.configs["k1"], args.seed)
        counter.start()
        started = time.monotonic()
        actions = {"agent": 0, "collector": 0, "broker": 0, "k2 agent": 0, "supervisor": 0}
        try:
            for _cycle in range(args.cycles):
                time.sleep(rng.uniform(0.1, 1.0))
                actions["supervisor"] += collector.supervise()
                roll = rng.random()
                if roll < 0.45:
                    kill_agent(estate, procs, "k1")
                    actions["agent"] += 1
                elif roll < 0.75:
                    collector.kill()
                    time.sleep(rng.uniform(0, 0.3))
                    collector.start()
                    actions["collector"] += 1
                elif roll < 0.9:
                    restart_broker(broker, rng, args.broker_sigkill)
                    actions["broker"] += 1
                else:
                    kill_agent(estate, procs, "k2")
                    actions["k2 agent"] += 1
            counter.stop_event.set()
            counter.join(30)
            # a fresh agent resends at once (no ack backoff carried over from the chaos)
            kill_agent(estate, procs, "k1")
            def drained():
                actions["supervisor"] += collector.supervise()
                return estate.ledgers["k1"].outbox_depth() == 0

            wait_until(drained, 300, interval=0.2, what="k1's outbox drained after the chaos")
            time.sleep(3)  # the last relayed fan-out reaches k2
        finally:
            counter.stop_event.set()
            collector.stop()
            for proc in procs.values():
                proc.terminate()
                proc.wait(15)
            estate.close()
        figures = report(estate, db, args.cycles, time.monotonic() - started)
    print("kills and restarts: " + ", ".join(f"{k} {v}" for k, v in actions.items()))
    print(f"counter: {counter.confirms} confirms, {counter.voids} undos")
    print("  ".join(f"{k}={v}" for k, v in figures.items()))
    ok = figures["lost"] == 0 and figures["double_counted"] == 0 and figures["void_state_wrong"] == 0
    print("goal (0 lost, 0 double-counted): " + ("met" if ok else "NOT met"))
    if not args.keep and ok:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
