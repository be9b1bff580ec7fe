"""The UI's logic without a window: PIN hashes, catalogs, texts, the controller."""

from datetime import UTC, datetime, timedelta

import pytest
from helpers import ManualWorker

from kiosk import config, context
from kiosk.core.verdict import Verdict
from kiosk.i18n import say
from kiosk.ui import controller as c
from kiosk.ui import demo, i18n, pin, present
from kiosk.ui.settings import UiSettings


# -- PIN ------------------------------------------------------------------------
def test_pin_hash_verifies_only_the_right_pin():
    stored = pin.make_hash("2468", iterations=1000)
    assert stored.startswith("pbkdf2_sha256$1000$")
    assert pin.verify("2468", stored)
    assert not pin.verify("2469", stored)
    assert pin.make_hash("2468", iterations=1000) != stored  # salted


@pytest.mark.parametrize("bad", ["12", "123456789", "12a4", "", "١٢٣٤"])
def test_pin_format_is_4_to_8_ascii_digits(bad):
    with pytest.raises(ValueError, match="4-8 digits"):
        pin.make_hash(bad)


def test_bad_pin_hash_in_config_names_the_key(tmp_path):
    built = demo.build(tmp_path / "d", cards=False)
    text = built.config.read_text().replace('pin_hash = "pbkdf2', 'pin_hash = "md5')
    built.config.write_text(text)
    from kiosk.ui import settings

    with pytest.raises(Exception, match=r"\[ui\] pin_hash"):
        settings.from_config(config.load(built.config))


def test_pin_hash_command_prints_a_config_line(capsys):
    from kiosk.cli import main

    assert main(["pin-hash", "--pin", "13579"]) == 0
    line = capsys.readouterr().out
    stored = line.split('"')[1]
    assert line.startswith("pin_hash = ") and pin.verify("13579", stored)
    assert main(["pin-hash", "--pin", "12"]) == 2
    assert "4-8 digits" in capsys.readouterr().err


def test_pin_hash_speaks_the_chosen_language(capsys):
    from kiosk.cli import main

    assert main(["pin-hash", "--pin", "13579", "--lang", "ru"]) == 0
    line = capsys.readouterr().out
    assert line.startswith('pin_hash = "') and pin.verify("13579", line.split('"')[1])
    assert "[ui]" in line and "kiosk.toml" in line and "put this line" not in line
    assert main(["pin-hash", "--pin", "12", "--lang", "kk"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kiosk pin-hash: ") and "PIN" in err and "digits" not in err


# -- catalogs: tests/test_i18n.py (every string translated, .mo fresh, font coverage)


# -- verdict texts -------------------------------------------------------------------
@pytest.fixture
def kiosk(tmp_path):
    built = demo.build(tmp_path / "demo", cards=False)
    cfg = config.load(built.config)
    ledger = context.open_ledger(cfg)
    yield built, ledger
    ledger.store.close()


def test_used_code_says_when_and_where(kiosk):
    built, ledger = kiosk
    result = ledger.check(built.payloads["already-used"])
    view = present.verdict_view(result, "en", this_device="counter-1")
    assert view.verdict is Verdict.ALREADY_REDEEMED and not view.can_confirm
    assert view.detail.startswith("Redeemed ") and view.detail.endswith(" at counter-2")
    assert (view.icon, view.signal) == ("cross", "refused")
    ru = present.verdict_view(result, "ru", this_device="counter-1")
    assert ru.reason == "Эта награда уже использована" and "counter-2" in ru.detail


def test_reward_title_and_type_per_language(kiosk):
    built, ledger = kiosk
    result = ledger.check(built.payloads["ready-voucher"])
    en = present.verdict_view(result, "en")
    assert (en.title, en.type_line, en.can_confirm) == ("Gift voucher", "50\u00a0000 UZS voucher", True)
    assert present.verdict_view(result, "uz").title == "Sovg\u02bba vaucheri"
    syrup = ledger.check(built.payloads["ready-syrup-5-uses"])
    assert present.verdict_view(syrup, "kk").title == "Free syrup"  # English fallback


def test_short_time_uses_translated_months():
    when = datetime(2026, 11, 12, 14, 2, tzinfo=UTC)
    assert i18n.short_time(when, "ru").split()[1] == "ноя"


# -- controller (jobs run inline, time is set by the test) ------------------------------
class FakeTime:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def ctl(kiosk):
    built, ledger = kiosk
    clock = FakeTime()
    settings = UiSettings(pin_hash=pin.make_hash("1234", iterations=1000), refusal_timeout=5,
                          verdict_timeout=10, done_timeout=3, staff_timeout=20,
                          language_timeout=15, max_pin_tries=3, pin_lockout=30)
    controller = c.Controller(ledger, settings=settings, now=clock)
    return controller, clock, built, ledger


def test_scan_shows_verdict_and_confirm_records_once(ctl):
    controller, _, built, ledger = ctl
    controller.scan(built.payloads["ready-syrup-5-uses"])
    assert controller.screen == c.VERDICT and controller.view().can_confirm
    token = controller.token
    assert controller.confirm(token) is True
    assert controller.confirm(token) is False  # the second tap of a double tap
    assert controller.screen == c.DONE
    assert len([r for r in ledger.history() if r["kind"] == "redeem" and r["origin"] == "local"]) == 1


def test_taps_and_button_presses_while_confirm_runs_are_ignored(ctl):
    controller, _, built, ledger = ctl
    worker = controller.worker = controller.print_worker = ManualWorker()
    controller.scan(built.payloads["ready-syrup-5-uses"])
    worker.run()
    assert controller.confirm(controller.token) is True
    assert controller.confirm(controller.token) is False
    controller.button_pressed()
    assert len(worker.jobs) == 1 and controller.confirming
    worker.run()
    assert controller.screen == c.DONE and not controller.confirming
    assert len([r for r in ledger.history() if r["kind"] == "redeem" and r["origin"] == "local"]) == 1


def test_confirm_is_ignored_for_refusals_and_stale_tokens(ctl):
    controller, _, built, ledger = ctl
    controller.scan(built.payloads["expired"])
    assert controller.confirm() is False
    controller.scan(built.payloads["ready-coffee"])
    assert controller.confirm(token=controller.token - 1) is False
    assert ledger.last_local_redemption() is None


def test_same_code_is_ignored_a_refusal_is_replaced_a_ready_one_holds_the_next(ctl):
    controller, _, built, _ = ctl
    assert controller.scan(built.payloads["expired"])
    token = controller.token
    assert not controller.scan(built.payloads["expired"])
    assert controller.token == token
    assert controller.scan(built.payloads["ready-coffee"])  # a refusal: the next customer
    assert controller.result.verdict is Verdict.READY and controller.token == token + 1
    assert not controller.scan(built.payloads["expired"])  # held while coffee waits
    assert controller.result.verdict is Verdict.READY and controller.waiting is not None
    controller.cancel(source="staff")
    assert controller.result.verdict is Verdict.EXPIRED and controller.waiting is None


def test_scan_during_confirm_is_ignored(ctl):
    controller, _, built, _ = ctl
    controller.scan(built.payloads["ready-coffee"])
    controller.confirming = True  # as while the worker records it
    assert not controller.scan(built.payloads["expired"])
    controller.confirming = False


def test_scans_are_ignored_in_the_staff_menu_but_typed_codes_count(ctl):
    controller, _, built, _ = ctl
    controller.open_staff()
    for key in "1234":
        controller.pin_key(key)
    controller.pin_key("ok")
    assert controller.screen == c.STAFF
    assert not controller.scan(built.payloads["ready-coffee"])
    controller.open_keypad()
    for key in "DEMO-COFFEE-0001":
        controller.code_key(key)
    controller.code_key("ok")
    assert controller.screen == c.VERDICT and controller.result.verdict is Verdict.READY


def test_every_screen_times_out_to_idle_and_default_language(ctl):
    controller, clock, built, _ = ctl
    controller.set_language("kk")
    controller.scan(built.payloads["expired"])
    clock.t += 4.9
    controller.tick()
    assert controller.screen == c.VERDICT
    clock.t += 0.2
    controller.tick()
    assert (controller.screen, controller.lang) == (c.IDLE, "en")
    controller.open_staff()
    clock.t += 21
    controller.tick()
    assert controller.screen == c.IDLE


def test_language_chosen_on_idle_returns_to_default_when_nobody_scans(ctl):
    controller, clock, _, _ = ctl
    controller.cycle_language()
    assert controller.lang == "uz"
    clock.t += 16
    controller.tick()
    assert controller.lang == "en"


def test_wrong_pins_lock_the_pad_for_a_while(ctl):
    controller, clock, _, _ = ctl
    controller.open_staff()
    for _ in range(3):
        for key in "9999":
            controller.pin_key(key)
        controller.pin_key("ok")
    assert controller.screen == c.PIN
    for key in "1234":
        controller.pin_key(key)
    controller.pin_key("ok")
    assert controller.screen == c.PIN and "wait" in controller.pin_message
    clock.t += 31
    for key in "1234":
        controller.pin_key(key)
    controller.pin_key("ok")
    assert controller.screen == c.STAFF


def test_undo_last_redemption(ctl):
    controller, _, built, ledger = ctl
    controller.scan(built.payloads["ready-coffee"])
    controller.confirm()
    controller.staff_menu()
    controller.open_undo()
    assert controller.page_data["id"] == ledger.last_local_redemption()["id"]
    controller.undo_last()  # asks first
    assert controller.undo_asking and not controller.page_data["voided_by"]
    controller.undo_really()
    assert controller.page_data["voided_by"]
    assert ledger.check(built.payloads["ready-coffee"]).verdict is Verdict.READY
    controller.undo_last()  # a second undo of the same one does nothing
    controller.undo_really()
    assert len([r for r in ledger.history() if r["kind"] == "void"]) == 1


def test_a_failing_ledger_loses_nothing_and_says_so(ctl):
    controller, _, built, ledger = ctl
    controller.scan(built.payloads["ready-coffee"])

    def broken(*_a, **_k):
        raise OSError("disk I/O error")

    ledger.confirm = broken
    controller.confirm()
    assert controller.screen == c.VERDICT and "disk I/O error" in controller.record_error
    assert not controller.confirming and controller.view().can_confirm
    del ledger.confirm
    controller.confirm()
    assert controller.screen == c.DONE


def test_not_provisioned_controller_ignores_scans():
    controller = c.Controller(None, problem="no config")
    assert controller.screen == c.NOT_PROVISIONED
    assert not controller.scan("ABCD")
    controller.tick()
    assert controller.screen == c.NOT_PROVISIONED


def test_runner_detects_missing_config_and_missing_keys(tmp_path):
    from kiosk.ui import runner

    cfg, problem = runner._not_provisioned_problem(tmp_path / "absent.toml")
    assert cfg is None and "config file not found" in problem
    assert say(problem, "ru").endswith("файл конфигурации не найден (задайте --config или KIOSK_CONFIG)")
    built = demo.build(tmp_path / "d", cards=False)
    text = built.config.read_text()
    start = text.index("[trust.keys]")
    built.config.write_text(text[:start] + text[text.index("[ui]"):])
    cfg, problem = runner._not_provisioned_problem(built.config)
    assert "no trusted public key" in problem
    assert "бірде-бір сенімді ашық кілт жоқ" in say(problem, "kk")


def test_status_line_texts(ctl):
    controller, _, _, _ = ctl
    controller.refresh_status()
    assert controller.status["list_version"] == 1
    assert controller.status["list_age_s"] == pytest.approx(7200, abs=120)
    assert timedelta(seconds=controller.status["list_age_s"]) < timedelta(hours=3)


def test_not_provisioned_kiosk_queues_a_genuine_setup_qr(tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from kiosk import provision

    key = Ed25519PrivateKey.generate()
    spool = tmp_path / "setup-qr.txt"

    def submit(payload):
        return provision.submit_setup_qr(payload, trusted_keys={"hq": key.public_key()}, spool=spool)

    controller = c.Controller(None, problem="no config", setup=submit)
    fields = {"device": "counter-7", "store": "tashkent-1", "program": "cafe",
              "broker": "mqtts://hq.example:8883", "credential": "one-time-secret"}
    assert controller.scan("https://example.com/menu")
    assert controller.setup_message == "This is not a setup QR code" and not spool.exists()
    forged = provision.make_setup_qr(fields, Ed25519PrivateKey.generate(), key_id="hq")
    controller.scan(forged)
    assert controller.setup_message.startswith("Setup QR refused") and not spool.exists()
    controller.scan(provision.make_setup_qr(fields, key, key_id="hq"))
    assert "counter-7" in controller.setup_message and "tashkent-1" in controller.setup_message
    assert spool.read_text().startswith(provision.SETUP_PREFIX)
    assert controller.screen == c.NOT_PROVISIONED


# -- what the UI needs of its devices; the Diagnostics page's own lines ------------------
def test_the_print_service_and_the_signals_meet_the_ui_protocols(kiosk):
    from gpiozero.pins.mock import MockFactory

    from kiosk import printing
    from kiosk.hardware.signals import Signals
    from kiosk.ui import devices, sounds

    built, ledger = kiosk
    service = printing.from_config(config.load(built.config), ledger.store)
    gpio = Signals.from_config({"green_led": 17, "buzzer": 18}, pin_factory=MockFactory())
    try:
        assert isinstance(service, devices.Printer)
        assert isinstance(sounds.Together(gpio, sounds.Sounds(mute=True)), devices.Signals)
        assert isinstance(sounds.Together(None, sounds.Sounds(mute=True)), devices.Signals)
        assert not isinstance(object(), devices.Printer)
    finally:
        gpio.close()
        service.close()


def test_diagnostics_in_the_ui_use_the_parts_it_holds(kiosk):
    from gpiozero.pins.mock import MockFactory

    from kiosk import printing
    from kiosk.doctor import held
    from kiosk.hardware.signals import Signals
    from kiosk.i18n import tr

    built, ledger = kiosk
    cfg = config.load(built.config)
    service = printing.from_config(cfg, ledger.store)
    gpio = Signals.from_config({"green_led": 17, "buzzer": 18, "button": 27},
                               pin_factory=MockFactory())
    try:
        checks = {check.name: check for check in held.in_ui(cfg, signals=gpio, printer=service)}
        russian = {check.name: check for check in
                   held.in_ui(cfg, signals=gpio, printer=service, lang="ru")}
    finally:
        gpio.close()
        service.close()
    assert "camera" not in checks and "decode" not in checks  # the UI holds the camera
    assert checks["database"].status == "OK"
    gpio_line = checks["gpio"]
    assert gpio_line.status == "OK" and "buzzer" in gpio_line.message
    assert "confirm button" in gpio_line.message and gpio_line.message.startswith("LED ")
    assert tuple(checks["receipts"]) == ("receipts", "OK", "0 receipt(s) waiting to print", "")
    # the screen's language, the doctor's wording (kiosk.doctor.devices), not English
    assert russian["receipts"].message == tr("{count} receipt(s) waiting to print", "ru").format(count=0)
    assert russian["receipts"].message != checks["receipts"].message
    assert tr("confirm button", "ru") in russian["gpio"].message
    assert russian["database"].message != checks["database"].message
