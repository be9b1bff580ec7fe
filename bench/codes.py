"""Benchmark of the code list: import a 1,000,000-code bundle and a 10,000-code delta,
then time verdict lookups. Prints figures; asserts nothing (see DESIGN.md section 8).

    .venv/bin/python bench/codes.py [--codes 1000000] [--delta 10000] [--lookups 100000]

Bundles are generated in a temporary folder by ``kiosk.core.bundle_writer`` from a
generator (never a list in memory). Each import runs in a child process so its peak
RSS (``VmHWM``) counts only the import, not the generation.
Goals on the 2-core dev machine: full import of 1M < 10 s and of 10M < 60 s, peak RSS
< 150 MB, delta < 1 s, lookup p99 < 0.2 ms, under 60 bytes per code on disk, a counter
write waits < 50 ms (p99 < 20 ms) during a full import. ``--bundles DIR`` keeps the
generated bundles for the next run (10M codes take about 10 minutes to generate).
"""

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kiosk.core import bundle, bundle_writer, codelist, codes, importer, keys  # noqa: E402
from kiosk.core.clock import Clock  # noqa: E402
from kiosk.core.ledger import Identity, Ledger  # noqa: E402
from kiosk.core.store import Store  # noqa: E402

PROGRAM = "bench"
REWARDS = {
    "coffee": {"type": "item", "value": 1, "title": {"en": "Free coffee"}},
    "ten": {"type": "percent", "value": 10, "title": {"en": "10% off"}},
}


def code_of(i: int) -> str:
    return f"BN{i:08d}Q"


def full_records(n: int, salt: bytes):
    for i in range(n):
        yield {"op": "put", "code_hash": codes.code_hash(salt, code_of(i)),
               "reward_id": "coffee" if i % 3 else "ten", "valid_from": None,
               "valid_until": None, "max_uses": 1, "stores": None}


def delta_records(n: int, base: int, salt: bytes):
    """Half new codes, a quarter re-put (changed reward), a quarter revoked."""
    for j in range(n):
        if j % 2 == 0:
            yield {"op": "put", "code_hash": codes.code_hash(salt, code_of(base + j)),
                   "reward_id": "coffee", "valid_from": None, "valid_until": None,
                   "max_uses": 2, "stores": None}
        elif j % 4 == 1:
            yield {"op": "put", "code_hash": codes.code_hash(salt, code_of(j * 7)),
                   "reward_id": "ten", "valid_from": None, "valid_until": None,
                   "max_uses": 1, "stores": ["s1"]}
        else:
            yield {"op": "revoke", "code_hash": codes.code_hash(salt, code_of(j * 11))}


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_import(db: str, path: str, pub: str) -> None:
    """Runs in the child process: import one bundle, print seconds and peak RSS."""
    store = Store(db)
    trusted = {"bench": keys.load_public(Path(pub))}
    switch_ms = []
    switch = importer._switch

    def timed_switch(*args):  # the one transaction an import makes on the ledger's database
        t0 = time.perf_counter()
        try:
            return switch(*args)
        finally:
            switch_ms.append((time.perf_counter() - t0) * 1000)

    importer._switch = timed_switch
    start = time.perf_counter()
    source = bundle.open_source(Path(path))
    manifest = importer.import_bundle(store, source, trusted, PROGRAM)
    seconds = time.perf_counter() - start
    use = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": seconds, "rss_mb": peak_rss_mb(), "switch_ms": switch_ms[0],
                      "cpu": use.ru_utime + use.ru_stime, "records": manifest.record_count}))


def run_child(db: Path, path: Path, pub: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child-import", str(db), str(path), str(pub)],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


class CounterWrites:
    """A stand-in for the counter while a list imports: a short write transaction every
    20 ms on its own connection (what a confirm takes), recording how long each waited
    for SQLite's write lock."""

    def __init__(self, db: Path):
        self.db, self.waits_ms, self.stop = db, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        store = Store(self.db)
        while not self.stop.wait(0.02):
            t0 = time.perf_counter()
            with store.transaction() as tx:
                self.waits_ms.append((time.perf_counter() - t0) * 1000)
                Store.set_meta(tx, "bench.tick", str(t0))
        store.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def time_lookups(db: Path, n_codes: int, n: int) -> tuple[float, float, float]:
    ledger = Ledger(Store(db), Identity("bench-1", "s1", PROGRAM), clock=Clock())
    rng = random.Random(7)
    payloads = [code_of(rng.randrange(n_codes)) if i % 2 else f"ZZ{rng.randrange(10**8):08d}Q"
                for i in range(n)]
    for p in payloads[:1000]:  # warm the page cache and the list cache
        ledger.check(p)
    samples, cpu = [], []
    for p in payloads:
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        ledger.check(p)
        samples.append(time.perf_counter_ns() - t0)
        cpu.append(time.thread_time_ns() - c0)
    samples.sort()
    cpu.sort()
    ms = [s / 1e6 for s in samples]
    return (ms[len(ms) // 2], ms[int(len(ms) * 0.99)], statistics.fmean(ms),
            cpu[int(len(cpu) * 0.99)] / 1e6)


def make_bundles(work: Path, n_codes: int, n_delta: int) -> tuple[Path, Path, Path]:
    """The full and delta bundles and the public key, generated into ``work`` unless a
    previous run with ``--bundles`` left them there."""
    full, delta, pub = work / "full", work / "delta", work / "keys" / keys.PUBLIC_NAME
    if (delta / bundle.SIGNATURE).exists() and (full / bundle.SIGNATURE).exists():
        return full, delta, pub
    for path in (full, delta):
        shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(work / "keys", ignore_errors=True)
    priv, pub = keys.generate(work / "keys")
    key = keys.load_private(priv)
    salt = bundle_writer.new_salt()
    bundle_writer.write(bundle_writer.Spec(PROGRAM, 1, "bench", salt, REWARDS),
                        full_records(n_codes, salt), key, full)
    bundle_writer.write(bundle_writer.Spec(PROGRAM, 2, "bench", salt, REWARDS, base_version=1),
                        delta_records(n_delta, n_codes, salt), key, delta)
    return full, delta, pub


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codes", type=int, default=1_000_000)
    ap.add_argument("--delta", type=int, default=10_000)
    ap.add_argument("--lookups", type=int, default=100_000)
    ap.add_argument("--bundles", metavar="DIR",
                    help="keep the generated bundles in DIR and reuse them next time "
                         "(generating 10,000,000 codes takes minutes)")
    ap.add_argument("--child-import", nargs=3, metavar=("DB", "BUNDLE", "PUB"))
    args = ap.parse_args()
    if args.child_import:
        child_import(*args.child_import)
        return 0

    with tempfile.TemporaryDirectory(prefix="kiosk-bench-") as tmp:
        tmp = Path(tmp)
        work = Path(args.bundles) / f"{args.codes}-{args.delta}" if args.bundles else tmp
        t0 = time.perf_counter()
        full, delta, pub = make_bundles(work, args.codes, args.delta)
        gen_s = time.perf_counter() - t0
        size_mb = sum(p.stat().st_size for p in full.iterdir()) / 1e6

        db = tmp / "device" / "kiosk.sqlite"
        Store(db).close()
        with CounterWrites(db) as counter:
            a = run_child(db, full, pub)
        b = run_child(db, delta, pub)
        p50, p99, mean, cpu99 = time_lookups(db, args.codes, args.lookups)
        db_mb = db.stat().st_size / 1e6
        have = Store(db).current_list()
        folder = codelist.list_dir(db)
        snap_bytes = (folder / have.snapshot_file).stat().st_size
        overlay_bytes = (folder / have.overlay_file).stat().st_size if have.overlay_file else 0

    load = os.getloadavg()
    print(f"redeem-kiosk code list benchmark (load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f}, {os.cpu_count()} CPUs)")
    print(f"  generated bundles in {gen_s:.1f} s (full bundle {size_mb:.1f} MB)")
    print(f"  full import   {a['records']:>9,} codes  {a['seconds']:6.2f} s   "
          f"peak RSS {a['rss_mb']:.0f} MB  CPU {a['cpu']:.1f} s  (goal < 10 s per million "
          f"up to 1M, < 60 s for 10M; < 150 MB)")
    waits = sorted(counter.waits_ms)
    print(f"  a counter write every 20 ms during the full import waited at most "
          f"{waits[-1]:.0f} ms for the write lock (p99 {waits[int(len(waits) * 0.99)]:.1f} ms, "
          f"{len(waits)} writes; goal < 50 ms, p99 < 20 ms); the import's one transaction on "
          f"the ledger's database took {a['switch_ms']:.1f} ms")
    print(f"  delta import  {b['records']:>9,} records {b['seconds']:6.3f} s   "
          f"peak RSS {b['rss_mb']:.0f} MB  CPU {b['cpu']:.1f} s  (goal < 1 s)")
    print(f"  lookups       {args.lookups:>9,} payloads p50 {p50:.3f} ms  p99 {p99:.3f} ms  "
          f"mean {mean:.3f} ms, CPU time p99 {cpu99:.3f} ms (goal p99 < 0.2 ms; half unknown; "
          f"wall-clock p99 includes waiting for a CPU on a loaded machine)")
    print(f"  on disk       snapshot {snap_bytes / 1e6:.0f} MB = {snap_bytes / a['records']:.1f} "
          f"bytes per code (goal < 60), overlay {overlay_bytes / 1e6:.1f} MB, "
          f"ledger database {db_mb:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
