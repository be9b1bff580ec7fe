"""Benchmark of receipt printing: how long the counter waits. Prints figures; asserts nothing.

    .venv/bin/python bench/printing.py [--runs 20]

* render: a receipt laid out as ESC/POS bytes (text + raster lines + QR), per language;
* preview: a receipt drawn as a PNG (``preview://``);
* tcp: a whole job to a fake network printer on loopback (connect, status, send);
* faults: how long until a fault is reported (refused port, paper out, a printer that
  never accepts a connection, with the default 3 s timeout).

Goals on the 2-core dev machine: render p50 < 150 ms in every language, a fault
reported within the transport timeout (3 s) plus 1 s.
"""

import argparse
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kiosk.hardware import escpos_setup  # noqa: E402

escpos_setup.prepare()  # an entry point: before python-escpos is imported

from kiosk.core import receipt  # noqa: E402
from kiosk.errors import PrinterError  # noqa: E402
from kiosk.hardware.printer import open_printer  # noqa: E402
from kiosk.hardware.printer.fake_server import PAPER_OUT, FakeNetworkPrinter  # noqa: E402
from kiosk.i18n import LANGUAGES  # noqa: E402

TITLES = {"en": "Free coffee", "uz": "Bepul qahva", "kk": "Тегін кофе", "ru": "Бесплатный кофе"}


def sample(lang: str) -> receipt.Receipt:
    data = receipt.ReceiptData(
        redemption_id="0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", business_name="Cafe Samarqand",
        reward_title=TITLES, at=datetime.now(UTC), clock="synced", store="main-store",
        device="counter-1", masked_code="0001", reward={"type": "percent", "value": 10})
    return receipt.build(data, lang)


def timed(fn, runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[-1]


def fault_time(url: str, timeout_s: float = 3.0) -> tuple[str, float]:
    printer = open_printer(url, timeout_s=timeout_s)
    t = time.perf_counter()
    try:
        printer.print_receipt(sample("en"))
        kind = "printed"
    except PrinterError as exc:
        kind = exc.fault
    return kind, (time.perf_counter() - t) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    print(f"{'what':<34} {'p50 ms':>8} {'max ms':>8}  bytes")
    for lang in LANGUAGES:
        for paper in (80, 58):
            printer = open_printer("dummy://", paper_mm=paper, profile="TM-T20II")
            r = sample(lang)
            p50, worst = timed(lambda p=printer, r=r: p.render(r), args.runs)
            size = len(printer.render(r))
            print(f"render {lang} {paper} mm{'':<20} {p50:8.1f} {worst:8.1f}  {size}")
    with tempfile.TemporaryDirectory() as tmp:
        preview = open_printer(f"preview://{tmp}")
        p50, worst = timed(lambda: preview.print_receipt(sample("kk")), args.runs)
        print(f"{'preview PNG kk':<34} {p50:8.1f} {worst:8.1f}")
    with FakeNetworkPrinter() as fake:
        tcp = open_printer(fake.url)
        p50, worst = timed(lambda: tcp.print_receipt(sample("kk")), args.runs)
        print(f"{'tcp job kk (loopback, status ok)':<34} {p50:8.1f} {worst:8.1f}")
    print("\nfault                              reported as      after ms")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kind, ms = fault_time(f"tcp://127.0.0.1:{port}")
    print(f"{'tcp refused':<34} {kind:<16} {ms:8.1f}")
    with FakeNetworkPrinter(PAPER_OUT) as fake:
        kind, ms = fault_time(fake.url)
    print(f"{'tcp paper out':<34} {kind:<16} {ms:8.1f}")
    with FakeNetworkPrinter({}) as fake:
        kind, ms = fault_time(fake.url)
    print(f"{'tcp no status answer (prints)':<34} {kind:<16} {ms:8.1f}")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    filler = socket.create_connection(server.getsockname(), timeout=1)
    kind, ms = fault_time(f"tcp://127.0.0.1:{server.getsockname()[1]}")
    print(f"{'tcp never accepts (timeout 3 s)':<34} {kind:<16} {ms:8.1f}")
    filler.close()
    server.close()
    kind, ms = fault_time("file:///nonexistent/usb/lp0")
    print(f"{'device file missing':<34} {kind:<16} {ms:8.1f}")


if __name__ == "__main__":
    main()
