"""The touch screen in a real Kivy window (Xvfb under ``make test``).

Scans come through the real scanning pipeline (replay camera, QR decoder, Scanner
thread) or the app's thread-safe ``deliver_scan``; touches are real MotionEvents
dispatched through Kivy's event loop; the ledger is a real SQLite file; receipts go
to the real PrintService (preview printer, or a TCP printer that refuses).
"""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

if not os.environ.get("DISPLAY"):
    pytest.skip("needs an X display: run under xvfb-run (make test does)", allow_module_level=True)

from kiosk.ui.kivyconf import configure_kivy  # noqa: E402

configure_kivy(width=800, height=480, home=Path(tempfile.mkdtemp(prefix="kiosk-test-kivy-")))

from gpiozero.pins.mock import MockFactory  # noqa: E402

from kiosk import config  # noqa: E402
from kiosk.core.verdict import Verdict  # noqa: E402
from kiosk.ui import controller as c  # noqa: E402
from kiosk.ui import demo  # noqa: E402


class FakeTime:
    def __init__(self):
        self.t = 5000.0

    def __call__(self):
        return self.t


@pytest.fixture(scope="module")
def window():
    from kivy.base import EventLoop

    EventLoop.ensure_window()
    win = EventLoop.window
    win.size = (800, 480)
    return win


@pytest.fixture
def kiosk(tmp_path, window):
    """make(camera=..., printer=..., ui=...) -> (harness, parts, built demo)."""
    from kiosk.ui import parts as kparts
    from kiosk.ui.harness import Harness
    from kiosk.ui.kivyconf import post

    made = []

    def make(*, camera: str = "none", printer: str | None = None, cards: list[str] = (),
             ui: str = ""):
        built = demo.build(tmp_path / f"demo{len(made)}", cards=bool(cards))
        text = built.config.read_text()
        start = text.index("[camera]")
        end = text.index("[gpio]")
        scan_dir = tmp_path / f"scan{len(made)}"
        if cards:
            scan_dir.mkdir()
            for name in cards:
                src = next(built.cards_dir.glob(f"*-{name}.png"))
                shutil.copy(src, scan_dir / src.name)
            camera = f"replay:{scan_dir}?fps=0&loop=0"
        printer = printer or f"preview://{built.receipts_dir}"
        text = (text[:start] + f'[camera]\nsource = "{camera}"\n\n[printer]\nurl = "{printer}"\n\n'
                + text[end:]).replace("[ui]\n", "[ui]\n" + ui + "\n")
        built.config.write_text(text)
        factory = MockFactory()
        parts = kparts.build(config.load(built.config), post=post, pin_factory=factory)
        parts.pins = factory
        harness = Harness(parts.controller, wedge=parts.wedge)
        made.append((harness, parts))
        parts.start(harness.app.deliver_scan)
        return harness, parts, built

    yield make
    for harness, parts in made:
        parts.stop()
        harness.close()


def redemptions(ledger) -> list[dict]:
    return [r for r in ledger.history() if r["kind"] == "redeem" and r["origin"] == "local"]


def on(h, screen: str) -> bool:
    """Wait until ``screen`` is shown and takes touches (no transition running)."""
    return h.until(lambda: h.app.sm.current == screen and not h.app.sm.transition.is_active)


def test_idle_screen_language_choice_and_return_to_default(kiosk):
    h, parts, built = kiosk()  # camera "none": the prompt points at the staff
    assert on(h, c.IDLE)
    assert h.widget("instruction").text == "Show your wallet card's QR code to the staff"
    h.tap(h.widget("languages").button("uz"))
    assert "koʻrsating" in h.widget("instruction").text
    assert h.widget("languages").button("uz").chosen
    h.app.deliver_scan(built.payloads["expired"])
    assert on(h, c.VERDICT)
    assert h.widget("reason").text == "Bu mukofotning muddati tugagan"
    h.tap_id("cancel")
    assert on(h, c.IDLE)
    assert h.widget("instruction").text == "Show your wallet card's QR code to the staff"


def test_camera_scan_then_double_tap_confirm_records_exactly_once(kiosk):
    h, parts, built = kiosk(cards=["ready-syrup-5-uses"])  # 5 uses: only the UI stops a 2nd
    assert on(h, c.VERDICT)
    screen = h.screen
    assert screen.ids.title.text == "Free syrup"
    assert screen.ids.type_line.text == "Free add-on"
    confirm = screen.ids.confirm
    assert confirm.opacity == 1 and not confirm.disabled
    from kivy.tests.common import UnitTestTouch

    x, y = confirm.to_window(*confirm.center)
    for _ in range(2):  # two taps inside one frame: the second lands while the first runs
        touch = UnitTestTouch(x, y)
        touch.touch_down()
        touch.touch_up()
    h.frames(1)
    parts.controller.button_pressed()  # the physical button, pressed at the same moment
    h.tap(confirm)  # and a third, later tap
    assert on(h, c.DONE)
    ledger = parts.controller.ledger
    assert len(redemptions(ledger)) == 1
    assert h.until(lambda: h.screen.ids.receipt.text == "Receipt printed")
    assert list(built.receipts_dir.glob("*.png"))
    assert h.until(lambda: not h.screen.ids.next_button.disabled)
    h.tap_id("next_button")
    assert on(h, c.IDLE)
    assert len(redemptions(ledger)) == 1


def test_physical_confirm_button_and_signals(kiosk):
    h, parts, built = kiosk()
    signals = parts.controller.signals
    if signals is None:
        pytest.skip("kiosk.hardware.signals is not installed")
    assert signals.describe()["button"] and signals.describe()["led"]
    button = parts.pins.pin(23)
    button.drive_low()  # pressed on idle: nothing to confirm
    button.drive_high()
    h.frames(3)
    assert h.app.sm.current == c.IDLE
    h.app.deliver_scan(built.payloads["ready-coffee"])
    assert on(h, c.VERDICT)
    button.drive_low()  # the staff member presses the confirm button (gpiozero thread)
    assert on(h, c.DONE)
    button.drive_high()
    assert len(redemptions(parts.controller.ledger)) == 1
    assert signals.wait_idle(10)


def test_refusal_shows_reason_and_staff_detail_without_confirm(kiosk):
    h, parts, built = kiosk(cards=["already-used"])
    assert on(h, c.VERDICT)
    ids = h.screen.ids
    assert ids.reason.text == "This reward has already been used"
    assert ids.detail.text.startswith("Redeemed ") and ids.detail.text.endswith("at counter-2")
    assert ids.icon.kind == "cross"
    assert ids.confirm.disabled and ids.confirm.opacity == 0
    assert ids.cancel.text == "OK"
    h.tap(ids.confirm)
    assert redemptions(parts.controller.ledger) == []


def test_screens_time_out_to_idle(kiosk):
    h, parts, built = kiosk()
    clock = FakeTime()
    parts.controller.now = clock
    h.app.deliver_scan(built.payloads["ready-coffee"])
    assert on(h, c.VERDICT)
    clock.t += parts.controller.settings.verdict_timeout - 1
    h.frames(3)
    assert h.app.sm.current == c.VERDICT
    clock.t += 2
    assert on(h, c.IDLE)
    h.tap_id("staff_button")
    assert on(h, c.PIN)
    clock.t += parts.controller.settings.staff_timeout + 1
    assert on(h, c.IDLE)


def _type_pin(h, digits: str) -> None:
    pad = h.screen.ids.keypad
    for d in digits:
        h.tap(pad.button(d), frames=1)
    h.tap(pad.button("ok"))


def test_pin_keypad_entry_confirm_and_undo(kiosk):
    h, parts, built = kiosk()
    ledger = parts.controller.ledger
    h.tap_id("staff_button")
    assert on(h, c.PIN)
    _type_pin(h, "9999")
    assert h.until(lambda: h.screen.ids.message.text == "Wrong PIN")
    assert h.app.sm.current == c.PIN
    _type_pin(h, built.pin)
    assert on(h, c.STAFF)
    h.tap_id("keypad")
    assert on(h, c.KEYPAD)
    pad = h.screen.ids.keypad
    for key in "DEMO-COFFEE-0001":
        h.tap(pad.button(key), frames=1)
    assert h.screen.ids.code.text == "DEMO-COFFEE-0001"
    h.tap_id("check")
    assert on(h, c.VERDICT)
    assert h.screen.ids.title.text == "Free coffee"
    h.tap_id("confirm")
    assert on(h, c.DONE)
    assert len(redemptions(ledger)) == 1
    assert h.until(lambda: not h.screen.ids.next_button.disabled)  # after the tap guard
    h.tap_id("next_button")
    assert on(h, c.KEYPAD)  # a typed code returns staff to the keypad, not the PIN
    h.tap_id("back")
    assert on(h, c.STAFF)
    h.tap_id("undo")
    assert on(h, c.UNDO)
    assert h.until(lambda: not h.screen.ids.undo.disabled)
    h.tap_id("undo")
    assert h.until(lambda: h.screen.ids.yes_undo.opacity == 1)  # "are you sure?"
    assert redemptions(ledger)[0]["voided_by"] is None
    h.tap_id("yes_undo")
    assert h.until(lambda: h.screen.ids.message.text == "Undone: the reward can be used again")
    assert redemptions(ledger)[0]["voided_by"]
    assert ledger.check(built.payloads["ready-coffee"]).verdict is Verdict.READY
    assert h.until(lambda: h.screen.ids.undo.disabled)  # cannot undo twice
    assert h.screen.ids.reprint.disabled  # nor reprint what was undone
    h.tap_id("back")
    assert on(h, c.STAFF)
    h.tap_id("history")
    assert on(h, c.HISTORY)
    assert h.until(lambda: "Free coffee" in h.screen.ids.body.text)
    assert "(Undone)" in h.screen.ids.body.text


def test_staff_screens_are_built_when_shown_and_freed_back_at_idle(kiosk):
    """Only the customer screens stay built (the UI's memory, bench/ui.py): a staff
    screen is made when staff open it, works, and is freed once the counter is idle."""
    import gc
    import weakref

    h, parts, built = kiosk()
    kept = {c.IDLE, c.VERDICT, c.DONE}
    assert set(h.app.sm.screen_names) == kept
    h.tap_id("staff_button")
    assert on(h, c.PIN)
    _type_pin(h, built.pin)
    assert on(h, c.STAFF)
    h.tap_id("history")
    assert on(h, c.HISTORY)
    assert set(h.app.sm.screen_names) == kept | {c.PIN, c.STAFF, c.HISTORY}
    history = weakref.ref(h.screen)
    h.tap_id("back")
    assert on(h, c.STAFF)
    h.tap_id("close")
    assert on(h, c.IDLE)
    assert set(h.app.sm.screen_names) == kept
    h.frames(3)
    gc.collect()
    assert history() is None  # nothing keeps the dropped screen (and its textures) alive
    h.tap_id("staff_button")  # built again, and works again
    assert on(h, c.PIN)
    _type_pin(h, built.pin)
    assert on(h, c.STAFF)


def test_failing_printer_is_shown_and_the_redemption_is_kept(kiosk):
    from kiosk.hardware.printer.fake_server import HEALTHY, PAPER_OUT, FakeNetworkPrinter

    with FakeNetworkPrinter(dict(PAPER_OUT)) as printer:
        h, parts, built = kiosk(printer=printer.url)
        h.app.deliver_scan(built.payloads["ready-coffee"])
        assert on(h, c.VERDICT)
        h.tap_id("confirm")
        assert on(h, c.DONE)
        assert h.until(lambda: h.screen.ids.receipt.text.startswith("Receipt not printed"))
        assert "paper" in h.screen.ids.detail.text.lower()
        assert len(redemptions(parts.controller.ledger)) == 1
        assert len(parts.controller.printer.pending()) == 1
        assert h.until(lambda: not h.screen.ids.next_button.disabled)
        h.tap_id("next_button")
        assert on(h, c.IDLE)
        assert "Printer needs attention" in h.screen.ids.status.text
        printer.status = dict(HEALTHY)  # staff put in a new roll
        h.tap_id("staff_button")
        _type_pin(h, built.pin)
        assert on(h, c.STAFF)
        h.tap_id("diagnostics")
        assert on(h, c.DIAGNOSTICS)
        assert h.until(lambda: h.screen.ids.retry.opacity == 1)  # shown: a receipt waits
        h.tap_id("retry")
        assert h.until(lambda: h.screen.ids.message.text == "Receipts printed: 1")
        assert parts.controller.printer.pending() == []
        assert printer.wait_for_jobs(1)


def test_missing_camera_is_shown_to_staff_and_codes_can_be_typed(kiosk):
    h, parts, built = kiosk(camera="none")
    assert h.until(lambda: "Camera off" in h.screen.ids.status.text)
    # The customer is pointed at the staff, not at a camera that is not there.
    assert h.until(lambda: "to the staff" in h.screen.ids.instruction.text)
    assert h.screen.ids.hint.opacity == 0
    h.tap_id("staff_button")
    _type_pin(h, built.pin)
    assert on(h, c.STAFF)
    h.tap_id("diagnostics")
    assert on(h, c.DIAGNOSTICS)
    assert h.until(lambda: "\u00d7  Camera: not working" in h.screen.ids.body.text)
    assert h.until(lambda: "OK  Lights, buzzer and button: fine" in h.screen.ids.body.text)
    assert h.screen.ids.retry.opacity == 0  # nothing waits to print
    h.tap_id("back")
    assert on(h, c.STAFF)
    h.tap_id("keypad")
    assert on(h, c.KEYPAD)
    for key in "DEMO-VOUCH-0003":
        h.tap(h.screen.ids.keypad.button(key), frames=1)
    h.tap_id("check")
    assert on(h, c.VERDICT)
    h.tap_id("confirm")
    assert on(h, c.DONE)
    assert [r["masked_code"] for r in redemptions(parts.controller.ledger)] == ["0003"]


def test_keyboard_wedge_burst_is_a_scan(kiosk, window):
    h, parts, built = kiosk()
    if parts.wedge is None:
        pytest.skip("kiosk.hardware.wedge is not installed")
    for ch in "DEMO-TEN-0005":
        window.dispatch("on_textinput", ch)
    window.dispatch("on_key_down", 13, 36, "\r", [])
    assert on(h, c.VERDICT)
    assert h.screen.ids.title.text == "10% off your order"


def test_not_provisioned_screen(window):
    from kiosk.errors import ProvisionError
    from kiosk.ui.harness import Harness

    def refuse(payload):
        raise ProvisionError("not_setup_qr", "this QR is not a kiosk setup code")

    h = Harness(c.Controller(None, problem="/etc/kiosk/kiosk.toml: config file not found",
                             setup=refuse))
    try:
        assert h.app.sm.current == c.NOT_PROVISIONED
        assert h.screen.ids.headline.text == "This kiosk is not set up yet"
        assert "config file not found" in h.screen.ids.problem.text
        h.app.deliver_scan("WIFI:S:guest;;")
        assert h.until(lambda: h.screen.ids.setup.text == "This is not a setup QR code")
    finally:
        h.close()


def test_not_provisioned_screen_explains_in_the_configured_language(window, tmp_path):
    """The runner's problem (a config error) is said in the screen's language."""
    from kiosk.i18n import tr
    from kiosk.ui import runner
    from kiosk.ui.harness import Harness
    from kiosk.ui.settings import UiSettings

    (tmp_path / "kiosk.toml").write_text('[device]\nlanguage = "ru"\nid = "bad id!"\n')
    cfg, problem = runner._not_provisioned_problem(tmp_path / "kiosk.toml")
    assert cfg is None and "[device] id: 'bad id!' must be 1-64 letters" in problem
    settings = UiSettings(language=config.language_hint(tmp_path / "kiosk.toml"))
    h = Harness(c.Controller(None, settings=settings, problem=problem))
    try:
        assert h.screen.ids.headline.text == tr("This kiosk is not set up yet", "ru")
        assert h.screen.ids.problem.text.endswith("[device] id: 'bad id!': должно быть 1–64 буквы, "
                                                  "цифры, '.', '_' или '-'")
    finally:
        h.close()


SIZES = [(800, 480), (1024, 600), (1280, 720), (720, 1280), (480, 800)]


def _labels(widget):
    from kivy.uix.label import Label

    for child in widget.walk():
        if isinstance(child, Label) and child.text and child.opacity > 0:
            yield child


def _show(controller, built, screen: str) -> None:
    """Bring the controller to ``screen`` through its public methods."""
    controller.go_idle()
    if screen in (c.VERDICT, c.DONE):
        controller.scan(built.payloads["ready-syrup-5-uses"] if screen == c.DONE
                        else built.payloads["ready-voucher"])
    if screen == c.DONE:
        controller.confirm()
    if screen in (c.PIN, c.STAFF, c.KEYPAD):
        controller.open_staff()
    if screen in (c.STAFF, c.KEYPAD):
        controller.staff_menu()
    if screen == c.KEYPAD:
        controller.open_keypad()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_layout_fits_every_supported_display(kiosk, window, size):
    """No text runs out of its widget or off the window, in any language."""
    h, parts, built = kiosk()
    controller = parts.controller
    window.size = size
    try:
        h.frames(3)
        if window.size != size:
            pytest.skip(f"the X server could not make a {size} window (got {window.size})")
        assert h.app.portrait == (size[1] > size[0])
        for lang in ("en", "uz", "kk", "ru"):
            for screen in (c.IDLE, c.VERDICT, c.DONE, c.PIN, c.STAFF, c.KEYPAD):
                _show(controller, built, screen)
                controller.set_language(lang)
                assert on(h, screen)
                h.frames(2)
                for label in _labels(h.screen):
                    where = f"{label.text!r} on {screen} in {lang} at {size}"
                    x, y = label.to_window(label.x, label.y)
                    assert x >= -1 and y >= -1 and x + label.width <= size[0] + 1, where
                    assert label.texture_size[0] <= label.width + 2, f"{where}: too wide"
                    assert label.texture_size[1] <= label.height + 2, f"{where}: clipped"
    finally:
        window.size = (800, 480)
        h.frames(2)


def test_camera_hint_follows_the_camera_position(kiosk):
    h, parts, built = kiosk(ui='camera_position = "bottom"')
    ids = h.screen.ids
    assert ids.hint.direction == "down"
    assert ids.hint.top <= ids.instruction.y + 1  # below the instruction, nearer the camera


def test_kiosk_demo_runs_the_whole_flow(tmp_path):
    """`kiosk demo` end to end: replay camera, decoder, scanner, UI, mock GPIO, and the
    systemd notifications (READY once drawn, WATCHDOG pings from the UI loop)."""
    import socket
    import subprocess
    import sys

    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock", NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
    out = subprocess.run(
        [sys.executable, "-m", "kiosk.cli", "demo", "--dir", str(tmp_path / "demo"),
         "--exit-after", "7"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    notify.setblocking(False)
    messages = []
    with contextlib.suppress(BlockingIOError):
        while True:
            messages.append(notify.recv(4096).decode())
    notify.close()
    assert messages[0].startswith("READY=1")
    assert "WATCHDOG=1" in messages[1:]
    assert "staff PIN 1234" in out.stdout
    summary = next(line for line in out.stdout.splitlines() if line.startswith("demo: "))
    verdicts = int(summary.split()[3])
    assert verdicts >= 1, summary
    assert len(list((tmp_path / "demo" / "cards").glob("*.png"))) == 8


def test_idle_prompt_points_at_the_camera_when_there_is_one(kiosk):
    h, parts, built = kiosk(cards=["ready-syrup-5-uses"])
    assert on(h, c.VERDICT)
    h.tap_id("cancel")
    assert on(h, c.IDLE)
    assert h.widget("instruction").text == "Show your wallet card's QR code to the camera"
    assert h.screen.ids.hint.opacity == 1
