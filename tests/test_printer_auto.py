"""``[printer] url = "auto"``: the USB receipt printer is found by class or maker.

pyusb cannot enumerate devices that are not there, so the device list is a small
fake with pyusb's shape (``idVendor``, ``idProduct``, ``bDeviceClass``, iterating
configurations of interfaces with ``bInterfaceClass``). Everything above it (the
transport, the print service, doctor) is the real code.
"""

from types import SimpleNamespace

import pytest

from kiosk import printing
from kiosk.doctor import devices as doctor_devices
from kiosk.hardware.printer import open_printer, transports


class FakeUsb(SimpleNamespace):
    """One USB device as pyusb shows it: one configuration, the given interface classes."""

    def __init__(self, vid, pid, dev_class=0, interfaces=(), product=""):
        super().__init__(idVendor=vid, idProduct=pid, bDeviceClass=dev_class, product=product)
        self._interfaces = [SimpleNamespace(bInterfaceClass=c) for c in interfaces]

    def __iter__(self):
        return iter([self._interfaces])


KEYBOARD = FakeUsb(0x046D, 0xC31C, interfaces=(3,), product="USB Keyboard")
WEBCAM = FakeUsb(0x046D, 0x0825, dev_class=0xEF, interfaces=(14, 14, 1, 1))
STICK = FakeUsb(0x0781, 0x5567, interfaces=(8,))
POS58 = FakeUsb(0x0416, 0x5011, interfaces=(0xFF,), product="POS58 Printer")
EPSON = FakeUsb(0x04B8, 0x0E15, interfaces=(0xFF,))
CLASS7 = FakeUsb(0x1FC9, 0x2016, interfaces=(7,), product="Thermal Printer")


def test_class_7_wins_over_known_ids_and_other_devices_are_ignored():
    found = transports.find_usb_printers([KEYBOARD, EPSON, WEBCAM, POS58, STICK, CLASS7])
    assert [(f["vendor"], f["product"]) for f in found] == [
        (0x1FC9, 0x2016), (0x0416, 0x5011), (0x04B8, 0x0E15)]
    assert found[0]["why"] == "USB class 7, printer" and found[0]["name"] == "Thermal Printer"
    assert "POS-58" in found[1]["why"] and "Epson" in found[2]["why"]
    assert transports.find_usb_printers([KEYBOARD, WEBCAM, STICK]) == []


def test_a_device_class_of_7_counts_even_without_readable_interfaces():
    class Locked(FakeUsb):
        def __iter__(self):
            raise PermissionError("access denied")

    found = transports.find_usb_printers([Locked(0x1234, 0x0001, dev_class=7)])
    assert [(f["vendor"], f["why"]) for f in found] == [(0x1234, "USB class 7, printer")]


@pytest.fixture
def usb_bus(monkeypatch):
    bus = []
    monkeypatch.setattr(transports, "list_usb_devices", lambda: list(bus))
    return bus


def test_auto_printer_reports_none_found_then_picks_one_plugged_in_later(usb_bus):
    printer = open_printer("auto", timeout_s=0.5)
    assert isinstance(printer.transport, transports.AutoUsbTransport)
    st = printer.status()
    assert st.state == "unplugged" and "no USB receipt printer found" in st.message
    usb_bus += [KEYBOARD, POS58]  # plugged in while the kiosk runs: no restart needed
    st = printer.status()
    # The fake is not a real device, so python-escpos cannot open it: unplugged, but
    # now naming the printer auto chose.
    assert printer.transport.chosen["product"] == 0x5011
    assert st.state == "unplugged" and "usb://0416:5011" in st.message


def auto_device(device):
    device.path.write_text(device.path.read_text() + '\n[printer]\nurl = "auto"\n')
    return device.config()


def test_doctor_says_which_printer_auto_chose(usb_bus, ledger, device):
    usb_bus += [STICK, CLASS7]
    cfg = auto_device(device)
    ctx = SimpleNamespace(cfg=cfg, store=ledger.store,
                          options=SimpleNamespace(probe_printer=True))
    check = doctor_devices.printer(ctx)
    assert "auto -> usb://1fc9:2016 'Thermal Printer' (USB class 7, printer)" in check.message
    usb_bus.clear()
    check = doctor_devices.printer(ctx)
    assert check.status == "FAIL" and "no USB receipt printer found" in check.message


def test_a_print_with_no_printer_found_is_queued_not_lost(usb_bus, ledger, device, hq):
    service = printing.from_config(auto_device(device), ledger.store)
    try:
        assert device.import_(hq.bundle(["AUTO-0001"])).rc == 0
        result = ledger.confirm("AUTO-0001")
        outcome = service.print_redemption(result.redemption_id)
        assert (outcome.state, outcome.fault) == ("queued", "unplugged")
        assert [j["redemption_id"] for j in service.pending()] == [result.redemption_id]
    finally:
        service.close()
