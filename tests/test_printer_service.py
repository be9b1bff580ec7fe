"""The print service and its durable queue, with real printers failing for real.

Every fault: the redemption stays recorded, the receipt stays queued with its error,
the message says what to do, and a retry prints it once the printer is back.
Faults come from real objects: TCP servers that refuse, hang up, never accept or
answer "paper out"/"cover open"; a device file that does not exist; python-escpos
Dummy subclasses raising exactly what python-escpos' Usb and File classes raise.
"""

import socket
import threading

import pytest
import usb.core
import zxingcpp
from escpos.exceptions import DeviceNotFoundError
from escpos.printer import Dummy

from kiosk import printing
from kiosk.core import receipt
from kiosk.core.store import Store
from kiosk.errors import KioskError, PrinterError
from kiosk.hardware.printer import escpos_stream, faults, open_printer
from kiosk.hardware.printer.escpos_printer import EscposPrinter
from kiosk.hardware.printer.fake_server import COVER_OPEN, OFFLINE, PAPER_OUT, FakeNetworkPrinter
from kiosk.hardware.printer.render import Layout
from kiosk.hardware.printer.transports import DummyTransport
from kiosk.i18n import say, tr

SAVED = "reprint it from the staff menu"


@pytest.fixture
def counter(hq, device):
    """A device with a code list and one confirmed redemption; yields (ledger, id)."""
    run = device.import_(hq.bundle(["COFFEE-0001", "COFFEE-0002", "COFFEE-0003"]))
    assert run.rc == 0, run.err
    ledger = device.ledger()
    result = ledger.confirm("COFFEE-0001")
    assert result.redemption_id
    yield ledger, result.redemption_id
    ledger.store.close()


def service(ledger, printer, **settings) -> printing.PrintService:
    return printing.PrintService(ledger.store, printer, {"business_name": "Cafe", **settings})


def decoded_qr(data: bytes) -> list[str]:
    out = []
    for img in escpos_stream.parse(data).rasters:
        out += [r.text for r in zxingcpp.read_barcodes(img.to_gray())]
    return out


# -- python-escpos Dummy subclasses raising what the real classes raise -----------------
class UnpluggedUsb(Dummy):
    def open(self):  # escpos.printer.Usb.open when usb.core.find() finds nothing
        raise DeviceNotFoundError("Unable to open USB printer on (1208, 3605):\n"
                                  "Device (1208, 3605) not found or cable not plugged in.")


class BusyUsbOnOpen(Dummy):
    def open(self):  # Usb.open wraps the pyusb error it got, without "from"
        try:
            raise usb.core.USBError("Resource busy", errno=16)
        except usb.core.USBError as e:
            raise DeviceNotFoundError(f"Unable to open USB printer on (1208, 3605):\n{e}")  # noqa: B904


class BusyUsbOnWrite(Dummy):
    def _raw(self, msg):  # Usb._raw -> device.write when another driver holds the interface
        raise usb.core.USBError("Resource busy", errno=16)


class NoPermissionFile(Dummy):
    def open(self):  # escpos.printer.File.open on a device file the kiosk user may not write
        try:
            raise PermissionError(13, "Permission denied", "/dev/usb/lp0")
        except OSError as e:
            raise DeviceNotFoundError(f"Could not open the specified file /dev/usb/lp0:\n{e}")  # noqa: B904


def dummy_printer(device) -> EscposPrinter:
    return EscposPrinter("dummy://", DummyTransport("default", device=device), Layout())


# -- real servers for network faults -------------------------------------------------------
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FullBacklog:
    """A listener whose accept queue is full: new connections time out, as to a dead host."""

    def __enter__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(0)
        self.port = self.server.getsockname()[1]
        self.fillers = []
        for _ in range(2):
            c = socket.socket()
            c.settimeout(0.3)
            try:
                c.connect(("127.0.0.1", self.port))
            except OSError:
                pass
            self.fillers.append(c)
        return self

    def __exit__(self, *exc):
        for c in self.fillers:
            c.close()
        self.server.close()


def assert_queued(svc, ledger, rid, outcome, fault, words):
    assert outcome.state == "queued" and not outcome.ok and outcome.fault == fault
    assert words in outcome.message and SAVED in outcome.message
    assert [r["id"] for r in ledger.history()] == [rid]  # the redemption is recorded
    [job] = svc.pending()
    assert job["redemption_id"] == rid and job["fault"] == fault and job["attempts"] == 1
    assert words in job["error"]
    assert svc.last == outcome
    for lang in ("uz", "kk", "ru"):  # staff read it in their language: fault and what to do
        said = say(outcome.message, lang)
        assert tr(faults.MESSAGES[fault], lang) in said and tr(printing.SAVED, lang) in said, said
        assert faults.MESSAGES[fault] not in said and SAVED not in said


# -- the happy path -----------------------------------------------------------------------
def test_receipt_prints_and_the_job_is_recorded_as_printed(counter):
    ledger, rid = counter
    printer = open_printer("dummy://")
    svc = service(ledger, printer)
    outcome = svc.print_redemption(rid, lang="ru")
    assert outcome.ok and outcome.state == "printed" and outcome.message == "Receipt printed."
    assert say(outcome.message, "ru") == "Чек напечатан."
    assert decoded_qr(printer.jobs[0]) == [rid]
    assert "Бесплатный кофе".encode("cp866") in printer.jobs[0]
    assert svc.pending() == []
    [job] = svc.jobs(rid)
    assert job["state"] == "printed" and job["printed_at"] and job["lang"] == "ru"


def test_reprint_says_reprint_and_is_a_second_job(counter):
    ledger, rid = counter
    printer = open_printer("dummy://")
    svc = service(ledger, printer)
    svc.print_redemption(rid)
    assert svc.print_redemption(rid, reprint=True).ok
    assert b"REPRINT" not in printer.jobs[0] and b"*** REPRINT ***" in printer.jobs[1]
    assert [j["reprint"] for j in svc.jobs(rid)] == [0, 1]


def test_no_printer_prints_nothing_and_queues_nothing(counter):
    ledger, rid = counter
    svc = service(ledger, open_printer("none"))
    outcome = svc.print_redemption(rid)
    assert outcome.state == "no_printer" and not outcome.ok and svc.pending() == []
    assert say(outcome.message, "kk") == "Принтер бапталмаған; чек басылмады."
    assert svc.status(probe=True)["state"] == "none"


def test_unknown_or_undone_redemption_is_a_clear_error(counter):
    ledger, rid = counter
    svc = service(ledger, open_printer("dummy://"))
    with pytest.raises(KioskError, match="no redemption nope") as exc:
        svc.print_redemption("nope")
    assert say(exc.value, "uz") == "bu qurilmada nope foydalanishi yoʻq"
    ledger.void(rid)
    with pytest.raises(KioskError, match="was undone") as exc:
        svc.print_redemption(rid)
    assert say(exc.value, "ru") == f"погашение {rid} отменено; чека нет"


def test_preview_printer_writes_a_png_with_the_qr(counter, tmp_path):
    ledger, rid = counter
    svc = service(ledger, open_printer(f"preview://{tmp_path}/out"))
    outcome = svc.print_redemption(rid, lang="kk")
    assert outcome.ok and outcome.path == str(tmp_path / "out" / f"receipt-{rid}.png")
    assert outcome.message == f"Receipt printed. Saved as {outcome.path}."
    assert say(outcome.message, "kk") == f"Чек басылды. {outcome.path} ретінде сақталды."
    status = svc.status(probe=True)  # the preview printer's status line, as doctor says it
    assert status["message"] == f"Receipts are saved as PNG files in {tmp_path / 'out'}."
    assert faults.translate(status["message"], "ru") == f"Чеки сохраняются как PNG-файлы в {tmp_path / 'out'}."
    from PIL import Image

    with Image.open(outcome.path) as img:
        assert [r.text for r in zxingcpp.read_barcodes(img)] == [rid]


# -- every fault ----------------------------------------------------------------------------
FAULTS = {
    "usb unplugged": (lambda: dummy_printer(UnpluggedUsb()), "unplugged", "plugged in"),
    "usb busy on open": (lambda: dummy_printer(BusyUsbOnOpen()), "busy", "another program"),
    "usb busy on write": (lambda: dummy_printer(BusyUsbOnWrite()), "busy", "another program"),
    "file no permission": (lambda: dummy_printer(NoPermissionFile()), "permission", "lp group"),
}


@pytest.mark.parametrize("name", list(FAULTS))
def test_usb_and_file_faults_queue_the_receipt(counter, name):
    ledger, rid = counter
    make, fault, words = FAULTS[name]
    svc = service(ledger, make())
    assert_queued(svc, ledger, rid, svc.print_redemption(rid), fault, words)


def test_missing_device_file_is_unplugged(counter, tmp_path):
    ledger, rid = counter
    svc = service(ledger, open_printer(f"file://{tmp_path}/no/such/lp0"))
    assert_queued(svc, ledger, rid, svc.print_redemption(rid), "unplugged", "plugged in")


def _as_nobody(fn):
    """Run ``fn`` in a forked child without root's file-mode override; return its result."""
    import os
    import pickle

    if os.geteuid() != 0:
        return fn()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, run, report, leave without cleanup
        try:
            os.setgid(65534)
            os.setuid(65534)
            payload = pickle.dumps(fn())
        except BaseException as exc:
            payload = pickle.dumps(exc)
        os.write(write, payload)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        result = pickle.loads(fh.read())
    os.waitpid(pid, 0)
    if isinstance(result, BaseException):
        raise result
    return result


def test_device_file_without_write_permission(counter, tmp_path):
    ledger, rid = counter
    lp = tmp_path / "lp0"
    lp.write_bytes(b"")
    lp.chmod(0o444)
    printer = open_printer(f"file://{lp}")
    svc = service(ledger, printer)
    built = receipt.build(svc.receipt_data(rid), "en")

    def attempt():
        try:
            printer.print_receipt(built)
        except PrinterError as exc:
            return exc.fault, str(exc)
        return "printed", ""

    fault, message = _as_nobody(attempt)
    assert fault == "permission" and "lp group" in message
    # and through the service (as whoever runs the tests): queued with that message
    svc.printer = dummy_printer(NoPermissionFile())
    assert_queued(svc, ledger, rid, svc.print_redemption(rid), "permission", "lp group")


@pytest.mark.parametrize("table,fault,words", [
    (PAPER_OUT, "paper_out", "out of paper"),
    (COVER_OPEN, "cover_open", "cover is open"),
    (OFFLINE, "offline", "offline"),
])
def test_network_printer_status_faults_queue_the_receipt(counter, table, fault, words):
    ledger, rid = counter
    with FakeNetworkPrinter(table) as fake:
        svc = service(ledger, open_printer(fake.url, timeout_s=2))
        outcome = svc.print_redemption(rid)
        fake.wait_for_jobs(0)
        assert fake.jobs == []  # nothing was sent to a printer that cannot print
    assert_queued(svc, ledger, rid, outcome, fault, words)


def test_network_printer_that_refuses(counter):
    ledger, rid = counter
    svc = service(ledger, open_printer(f"tcp://127.0.0.1:{closed_port()}", timeout_s=2))
    assert_queued(svc, ledger, rid, svc.print_redemption(rid), "refused", "refused the connection")


def test_network_printer_that_hangs_up(counter):
    ledger, rid = counter
    with FakeNetworkPrinter(hang_up=True) as fake:
        svc = service(ledger, open_printer(fake.url, timeout_s=2))
        outcome = svc.print_redemption(rid)
    assert_queued(svc, ledger, rid, outcome, "offline", "offline")


def test_network_printer_that_never_accepts_times_out(counter):
    ledger, rid = counter
    with FullBacklog() as dead:
        svc = service(ledger, open_printer(f"tcp://127.0.0.1:{dead.port}", timeout_s=0.5))
        outcome = svc.print_redemption(rid)
    assert_queued(svc, ledger, rid, outcome, "timeout", "did not answer in time")


class DiesMidJob(Dummy):
    def _raw(self, msg):  # status queries pass; the job write fails (cable pulled)
        if len(msg) > 3:
            raise usb.core.USBError("Input/Output Error", errno=5)
        super()._raw(msg)


def test_fault_while_sending_marks_the_retry_as_reprint(counter):
    ledger, rid = counter
    svc = service(ledger, dummy_printer(DiesMidJob()))
    assert svc.print_redemption(rid).fault == "offline"
    assert svc.pending()[0]["reprint"] == 1  # part of it may be on paper already
    svc.printer = healthy = open_printer("dummy://")
    [outcome] = svc.retry_pending()
    assert outcome.ok and b"*** REPRINT ***" in healthy.jobs[0]


# -- the queue ----------------------------------------------------------------------------------
def test_queue_survives_a_restart_and_retry_prints_oldest_first(counter, device):
    ledger, rid = counter
    second = ledger.confirm("COFFEE-0002").redemption_id
    with FakeNetworkPrinter(PAPER_OUT) as fake:
        svc = service(ledger, open_printer(fake.url, timeout_s=2))
        svc.print_redemption(rid)
        svc.print_redemption(second, lang="uz")
        assert svc.status()["state"] == "paper_out"
    svc.close()
    assert ledger.history()  # close() closed the service's own connection, not the ledger's
    store = Store(ledger.store.path)  # the kiosk restarted
    healthy = open_printer("dummy://")
    svc = printing.PrintService(store, healthy, {})
    assert [j["redemption_id"] for j in svc.pending()] == [rid, second]
    outcomes = svc.retry_pending()
    assert [o.state for o in outcomes] == ["printed", "printed"]
    assert [decoded_qr(j) for j in healthy.jobs] == [[rid], [second]]
    assert svc.pending() == [] and svc.status()["pending"] == 0
    store.close()


def test_reprint_while_queued_reuses_the_queued_job(counter):
    ledger, rid = counter
    svc = service(ledger, dummy_printer(UnpluggedUsb()))
    svc.print_redemption(rid)
    svc.print_redemption(rid, reprint=True)
    [job] = svc.pending()
    assert job["attempts"] == 2 and job["reprint"] == 1


def test_retry_stops_at_the_first_failure_and_drops_undone_redemptions(counter):
    ledger, rid = counter
    second = ledger.confirm("COFFEE-0002").redemption_id
    svc = service(ledger, dummy_printer(UnpluggedUsb()))
    svc.print_redemption(rid)
    svc.print_redemption(second)
    assert len(svc.retry_pending()) == 1  # the printer is still gone: stop there
    ledger.void(rid)
    svc.printer = open_printer("dummy://")
    outcomes = svc.retry_pending()
    assert [o.state for o in outcomes] == ["printed"]
    assert [j["state"] for j in svc.jobs(rid)] == ["cancelled"]


def test_printing_from_a_worker_thread_while_the_counter_goes_on(counter):
    ledger, rid = counter
    with FakeNetworkPrinter({}) as fake:  # answers no status: waits its status timeout
        svc = service(ledger, open_printer(fake.url, timeout_s=2))
        results = []
        worker = threading.Thread(target=lambda: results.append(svc.print_redemption(rid)))
        worker.start()
        nxt = ledger.confirm("COFFEE-0002")  # the next customer, on the main thread
        worker.join(timeout=30)
        assert nxt.redemption_id and results[0].ok
        assert len(fake.wait_for_jobs(1)) == 1


def test_unexpected_exceptions_never_reach_the_caller(counter):
    class Broken(Dummy):
        def _raw(self, msg):
            raise RuntimeError("firmware said no")

    ledger, rid = counter
    svc = service(ledger, dummy_printer(Broken()))
    outcome = svc.print_redemption(rid)
    assert outcome.state == "queued" and outcome.fault == "error" and "firmware said no" in outcome.message


def test_fault_classification_uses_the_original_cause():
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as e:
            raise DeviceNotFoundError(f"Could not open socket for h:\n{e}")  # noqa: B904
    except DeviceNotFoundError as wrapped:
        assert faults.classify(wrapped, "x").fault == "refused"


def test_many_threads_printing_and_reading_the_queue_at_once(counter):
    ledger, rid = counter
    ids = [rid] + [ledger.confirm(c).redemption_id for c in ("COFFEE-0002", "COFFEE-0003")]
    printer = open_printer("dummy://")
    svc = service(ledger, printer)
    errors, outcomes = [], []

    def work(n):
        try:
            for i in range(3):
                outcomes.append(svc.print_redemption(ids[(n + i) % 3], reprint=i > 0))
                svc.pending()
                svc.status()
        except Exception as exc:  # any exception here is a bug
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and len(outcomes) == 12 and all(o.ok for o in outcomes)
    assert len(printer.jobs) == 12 and svc.pending() == []
    assert sum(len(svc.jobs(i)) for i in ids) == 12
