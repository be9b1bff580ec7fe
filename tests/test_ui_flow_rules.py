"""The customer-flow rules of the controller and the audit trail, without a window:
a real ledger and audit table in SQLite, time set by the test."""

import json
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
from helpers import ManualWorker

from kiosk import config, context
from kiosk.core import audit
from kiosk.core.verdict import Verdict
from kiosk.ui import controller as c
from kiosk.ui import demo, pin
from kiosk.ui.settings import UiSettings


class FakeTime:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class Signals:
    def __init__(self):
        self.shown = []

    def show(self, kind):
        self.shown.append(kind)


@pytest.fixture
def flow(tmp_path):
    built = demo.build(tmp_path / "demo", cards=False)
    ledger = context.open_ledger(config.load(built.config))
    trail = audit.AuditLog(ledger.store.path, background=False)
    clock, signals = FakeTime(), Signals()
    settings = UiSettings(pin_hash=pin.make_hash("1234", iterations=1000), verdict_timeout=30,
                          refusal_timeout=5, done_timeout=4, staff_timeout=20)
    ctl = c.Controller(ledger, settings=settings, now=clock, audit=trail, signals=signals)
    yield ctl, clock, built, ledger, trail, signals
    trail.close()
    ledger.store.close()


def local_redemptions(ledger):
    return [r["masked_code"] for r in ledger.history() if r["kind"] == "redeem" and r["origin"] == "local"]


def kinds(trail):
    return [e["kind"] for e in trail.entries()]


def test_a_ready_verdict_holds_the_next_customer_until_staff_finish(flow):
    ctl, clock, built, ledger, trail, _ = flow
    ctl.scan(built.payloads["ready-coffee"])
    token = ctl.token
    assert ctl.scan(built.payloads["ready-voucher"], "keyboard") is False
    assert ctl.result.masked_code == "0001" and ctl.token == token
    assert ctl.waiting == (built.payloads["ready-voucher"], "keyboard")
    assert ctl.confirm(token) is True
    assert ctl.screen == c.DONE and local_redemptions(ledger) == ["0001"]
    clock.t += c.DONE_HOLD - 0.1
    ctl.tick()
    assert ctl.screen == c.DONE  # staff see "Redeemed" first
    clock.t += 0.2
    ctl.tick()
    assert ctl.screen == c.VERDICT and ctl.result.masked_code == "0003" and ctl.waiting is None
    assert "held" in kinds(trail)


def test_a_stale_token_never_confirms_and_guards_ignore_fresh_taps(flow):
    ctl, clock, built, ledger, _, _ = flow
    ctl.scan(built.payloads["expired"])
    old = ctl.token
    ctl.scan(built.payloads["ready-coffee"])  # a refusal is replaced by the next scan
    assert ctl.confirm(old) is False and local_redemptions(ledger) == []
    ctl.scan(built.payloads["ready-voucher"])
    ctl.cancel(ctl.token)  # coffee cancelled: the held voucher shows, guarded
    assert ctl.result.masked_code == "0003" and ctl.guarded
    assert ctl.cancel(ctl.token) is False and ctl.confirm(ctl.token) is False
    clock.t += c.TAP_GUARD
    ctl.tick()
    assert ctl.confirm(ctl.token) is True
    assert ctl.cancel(source="touch") is False  # Done: the second tap of a double tap
    assert ctl.screen == c.DONE
    clock.t += c.TAP_GUARD
    assert ctl.cancel() is True and ctl.screen == c.IDLE


def test_a_ready_verdict_warns_then_is_recorded_unconfirmed(flow):
    ctl, clock, built, ledger, trail, signals = flow
    ctl.scan(built.payloads["ready-coffee"])
    clock.t += 30 - c.WARN_SECONDS - 0.5
    ctl.tick()
    assert ctl.warning == 0
    clock.t += 1
    ctl.tick()
    assert ctl.warning == 10 and signals.shown[-1] == "ready"
    clock.t += 9.4
    ctl.tick()
    assert ctl.warning == 1 and ctl.screen == c.VERDICT
    clock.t += 0.2
    ctl.tick()
    assert ctl.screen == c.IDLE and local_redemptions(ledger) == []
    timeouts = trail.entries(kinds=("timeout",))
    assert len(timeouts) == 1 and timeouts[0]["masked_code"] == "0001"
    assert timeouts[0]["note"] == "unconfirmed" and timeouts[0]["reward_id"] == "coffee"
    ctl.open_staff()
    ctl.staff_menu()
    ctl.open_history()
    assert ctl.page_data[0]["kind"] == "unconfirmed"
    from kiosk.ui.screens.history import history_lines

    assert "Not confirmed (timed out): Free coffee" in history_lines(ctl.page_data, "en")[0]


def test_auto_confirm_redeems_at_the_timeout(flow):
    ctl, clock, built, ledger, trail, _ = flow
    ctl.settings.auto_confirm = True
    ctl.scan(built.payloads["ready-coffee"])
    clock.t += 31
    ctl.tick()
    assert ctl.screen == c.DONE and local_redemptions(ledger) == ["0001"]
    confirm = trail.entries(kinds=("confirm",))[0]
    assert confirm["source"] == "auto" and confirm["redemption_id"]


def test_auto_confirm_in_config_is_read_and_checked(tmp_path):
    from kiosk.ui import settings

    built = demo.build(tmp_path / "d", cards=False)
    text = built.config.read_text()
    built.config.write_text(text.replace("[ui]\n", "[ui]\nauto_confirm = true\n"))
    cfg = config.load(built.config)
    assert settings.from_config(cfg).auto_confirm is True and not cfg.warnings
    built.config.write_text(text.replace("[ui]\n", '[ui]\nauto_confirm = "yes"\n'))
    with pytest.raises(Exception, match=r"\[ui\] auto_confirm"):
        settings.from_config(config.load(built.config))


def test_the_same_card_after_done_is_redeemed_just_now_not_refused(flow, monkeypatch):
    ctl, clock, built, ledger, trail, _ = flow
    ctl.scan(built.payloads["ready-coffee"])
    ctl.confirm()
    clock.t += 5
    ctl.tick()
    assert ctl.screen == c.IDLE
    ctl.scan("DEMO-COFFEE-0001", "keyboard")  # the same code, now from the USB scanner
    assert ctl.screen == c.DONE and ctl.again and ctl.redeemed.masked_code == "0001"
    assert local_redemptions(ledger) == ["0001"]
    ctl.go_idle()
    ctl.scan(built.payloads["already-used"])  # used at counter-2 95 min ago: a refusal
    assert ctl.screen == c.VERDICT and ctl.result.verdict is Verdict.ALREADY_REDEEMED
    monkeypatch.setattr("kiosk.ui.flow.RECENT_WINDOW", 0.0)  # later than "just now"
    ctl.go_idle()
    time.sleep(0.01)
    ctl.scan(built.payloads["ready-coffee"])
    assert ctl.screen == c.VERDICT and ctl.result.verdict is Verdict.ALREADY_REDEEMED


def test_typed_code_ignores_the_camera_and_returns_to_the_keypad(flow):
    ctl, clock, built, ledger, _, _ = flow
    ctl.open_staff()
    for key in "1234":
        ctl.pin_key(key)
    ctl.pin_key("ok")
    ctl.open_keypad()
    for key in "DEMO-OLD-0004":
        ctl.code_key(key)
    ctl.code_key("ok")
    assert ctl.screen == c.VERDICT and ctl.result.verdict is Verdict.EXPIRED
    assert ctl.scan(built.payloads["ready-coffee"]) is False  # even over a refusal
    assert ctl.result.verdict is Verdict.EXPIRED and ctl.waiting is None
    ctl.cancel()
    assert ctl.screen == c.KEYPAD
    clock.t += 6
    ctl.tick()
    assert ctl.screen == c.KEYPAD  # the staff timeout, not the refusal one, applies now


def test_undo_asks_first_and_reprint_is_refused_once_undone(flow):
    ctl, clock, built, ledger, trail, _ = flow
    ctl.scan(built.payloads["ready-coffee"])
    ctl.confirm()
    printed = []
    ctl.printer = type("P", (), {"print_redemption": lambda self, *a, **k: printed.append(a)})()
    ctl.staff_menu()
    ctl.open_undo()
    ctl.undo_really()  # without asking first: nothing
    assert not ctl.page_data["voided_by"]
    ctl.undo_last()
    assert ctl.undo_asking
    ctl.undo_keep()
    assert not ctl.undo_asking and not ctl.page_data["voided_by"]
    ctl.undo_last()
    ctl.undo_really()
    assert ctl.page_data["voided_by"]
    ctl.reprint_last()
    assert printed == [] and ctl.print_state == ""
    assert trail.entries(kinds=("undo",))[0]["masked_code"] == "0001"


def test_audit_never_keeps_a_raw_payload_and_logs_json(flow, caplog):
    ctl, _, built, _, trail, _ = flow
    with caplog.at_level(logging.INFO, logger="kiosk.audit"):
        ctl.scan(built.payloads["not-a-code"])
    assert "latte-art" not in json.dumps(trail.entries())
    lines = [r.getMessage() for r in caplog.records if r.name == "kiosk.audit"]
    assert lines and all("latte-art" not in line for line in lines)
    row = json.loads(lines[0].split(" ", 1)[1])
    assert row["kind"] == "scan" and row["verdict"] == "not_a_code"


def test_audit_entries_older_than_keep_days_are_pruned(tmp_path):
    from kiosk.core.store import Store

    Store(tmp_path / "k.sqlite").close()
    trail = audit.AuditLog(tmp_path / "k.sqlite", keep=7, background=True)
    trail.record("cancel", source="touch")
    trail.flush()
    assert trail.prune(datetime.now(UTC) + timedelta(days=6)) == 0
    assert trail.prune(datetime.now(UTC) + timedelta(days=8)) == 1
    trail.close()
    with pytest.raises(ValueError, match="unknown audit kind"):
        audit.entry("coffee")


def test_audit_keep_days_config(tmp_path):
    built = demo.build(tmp_path / "d", cards=False)
    text = built.config.read_text()
    built.config.write_text(text + "\n[audit]\nkeep_days = 0\n")
    with pytest.raises(Exception, match=r"\[audit\] keep_days"):
        audit.keep_days(config.load(built.config))
    built.config.write_text(text + "\n[audit]\nkeep_days = 30\n")
    assert audit.keep_days(config.load(built.config)) == 30


def test_scans_during_a_slow_confirm_are_held_not_lost(flow):
    ctl, clock, built, ledger, _, _ = flow
    worker = ctl.worker = ctl.print_worker = ManualWorker()
    ctl.scan(built.payloads["ready-coffee"])
    worker.run()
    assert ctl.confirm() is True
    assert ctl.scan(built.payloads["expired"]) is False and ctl.waiting is not None
    worker.run()
    assert ctl.screen == c.DONE
    clock.t += c.DONE_HOLD
    ctl.tick()
    worker.run()  # the held card's check
    assert ctl.screen == c.VERDICT and ctl.result.verdict is Verdict.EXPIRED
