"""Readable by everyone: refusal details, language choice on every customer screen,
the kiosk's own sounds and plain-worded diagnostics.

Pure parts (texts, sounds) are tested directly; the language choice runs the real
app in a real Kivy window (Xvfb) with real touches, a real SQLite ledger and the
demo's signed code list.
"""

import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kiosk import config, context
from kiosk.core.verdict import Verdict
from kiosk.ui import demo, present, sounds
from kiosk.ui.i18n import LANGUAGES, short_time, tr


@pytest.fixture
def kiosk(tmp_path):
    built = demo.build(tmp_path / "demo", cards=False, extra_config="")
    cfg = config.load(built.config)
    ledger = context.open_ledger(cfg)
    yield built, ledger
    ledger.store.close()


# -- refusal texts ------------------------------------------------------------------
def test_refusal_says_how_long_ago_which_reward_and_what_next(kiosk):
    built, ledger = kiosk
    result = ledger.check(built.payloads["already-used"])  # used at counter-2, 95 min ago
    view = present.verdict_view(result, "en", this_device="counter-1")
    assert view.detail == "Redeemed 95 min ago at counter-2"
    assert view.type_line == "Free coffee"  # the reward's name, on a refusal too
    assert view.next_step.startswith("Each reward can be used once")
    ru = present.verdict_view(result, "ru", this_device="counter-1")
    assert (ru.detail, ru.type_line) == ("Погашено: 95 мин назад, counter-2", "Бесплатный кофе")
    assert all(present.verdict_view(result, lang).next_step for lang in LANGUAGES)


def test_this_counter_is_named_by_its_friendly_name(kiosk):
    built, ledger = kiosk
    result = ledger.check(built.payloads["already-used"])
    view = present.verdict_view(result, "en", this_device="counter-2", device_name="Front counter")
    assert view.detail.endswith(" at Front counter")
    assert present.verdict_view(result, "en", this_device="counter-2").detail.endswith(" at this kiosk")


def test_device_name_and_sound_keys_are_read_from_the_config(tmp_path):
    from kiosk.ui import settings

    built = demo.build(tmp_path / "d", cards=False)
    text = built.config.read_text().replace("[device]\n", '[device]\nname = "Front counter"\n', 1)
    built.config.write_text(text.replace("[ui]\n", "[ui]\nsound_volume = 0.3\nmute = true\n"))
    cfg = config.load(built.config)
    assert not cfg.warnings
    s = settings.from_config(cfg)
    assert (s.device_name, s.sound_volume, s.mute) == ("Front counter", 0.3, True)
    built.config.write_text(text.replace("[ui]\n", "[ui]\nsound_volume = 3\n"))
    with pytest.raises(Exception, match=r"\[ui\] sound_volume"):
        settings.from_config(config.load(built.config))


def test_a_wifi_qr_never_shows_its_password(kiosk):
    built, ledger = kiosk
    result = ledger.check(built.payloads["not-a-code"])  # WIFI:S:DemoCafe-Guest;T:WPA;P:latte-art;;
    assert result.verdict is Verdict.NOT_A_CODE
    for lang in LANGUAGES:
        view = present.verdict_view(result, lang)
        shown = " ".join([view.reason, view.title, view.type_line, view.detail, view.next_step])
        assert "latte-art" not in shown and "DemoCafe" not in shown and "WIFI" not in shown
    assert present.verdict_view(result, "en").detail == "This is a Wi-Fi network QR code"
    link = present.scanned_kind("https://menu.example.com/drinks?table=4&token=secret", "en")
    assert link == "This is a link to menu.example.com"


def test_relative_times_in_both_directions():
    now = datetime(2026, 11, 12, 14, 0, tzinfo=UTC)
    assert present.relative(now - timedelta(seconds=20), "en", now) == "just now"
    assert present.relative(now - timedelta(minutes=95), "en", now) == "95 min ago"
    assert present.relative(now - timedelta(hours=5), "ru", now) == "5 ч назад"
    assert present.relative(now + timedelta(days=5), "kk", now) == "5 күннен кейін"
    long_ago = now - timedelta(days=30)  # beyond two weeks: the date itself
    assert present.relative(long_ago, "en", now) == short_time(long_ago, "en", now)


# -- staff-facing words -----------------------------------------------------------------
def test_diagnostics_and_printer_faults_are_plain_words_in_every_language():
    pytest.importorskip("kiosk.hardware.printer.faults")
    from kiosk.hardware.printer.faults import MESSAGES
    from kiosk.ui.screens.diagnostics import check_lines, waiting_receipts

    checks = [("config", "OK", "device counter-1, store s, program p", ""),
              ("database", "FAIL", "/var/lib/kiosk/kiosk.db: integrity check says corrupt", "fsck"),
              ("sync", "WARN", "kiosk-sync connected; last sync 2026-11-12T14:02:11Z", ""),
              ("receipts", "WARN", "2 receipt(s) waiting to print", "")]
    status = {"camera": "ok", "printer": "queued",
              "printer_message": MESSAGES["paper_out"] + " (tcp://10.0.0.5:9100)"}
    assert waiting_receipts(checks) == 2
    for lang in LANGUAGES:
        text = "\n".join(check_lines(checks, status, lang))
        assert "/var/lib" not in text and "2026-11-12" not in text and "tcp://" not in text
        assert tr("Printer is out of paper: load a new roll.", lang) in text
        assert tr("Database", lang) + ": " + tr("not working", lang) in text
    assert "Принтер" in "\n".join(check_lines(checks, status, "ru"))
    assert waiting_receipts([("receipts", "OK", "0 receipt(s) waiting to print", "")]) == 0


# -- sounds -----------------------------------------------------------------------------
def test_sound_files_are_the_synthesised_ones_and_distinct():
    blobs = {}
    for name in sounds.TUNES:
        path = sounds.SOUND_DIR / f"{name}.wav"
        assert path.read_bytes() == sounds.synthesize(name), f"{path} is stale: python -m kiosk.ui.sounds"
        blobs[name] = path.read_bytes()
        assert 4_000 < len(blobs[name]) < 40_000  # short: well under a second
    assert len(set(blobs.values())) == len(blobs)


class FakeSound:
    def __init__(self, path):
        self.path, self.length, self.volume, self.plays = path, 0.3, 1.0, 0

    def stop(self):
        pass

    def play(self):
        self.plays += 1


def test_each_signal_kind_has_its_sound_and_mute_or_no_device_stays_silent():
    loaded = {}

    def loader(path):
        loaded[Path(path).stem] = FakeSound(path)
        return loaded[Path(path).stem]

    s = sounds.Sounds(volume=0.4, loader=loader)
    for kind in ("ready", "refused", "redeemed", "error", "idle"):
        s.show(kind)
    assert s.played == ["ready", "refused", "done", "refused"]
    assert loaded["ready"].volume == 0.4 and loaded["refused"].plays == 2
    muted = sounds.Sounds(mute=True, loader=loader)
    muted.show("ready")
    assert muted.played == []
    tried = []
    silent = sounds.Sounds(loader=lambda path: tried.append(path))  # no audio device
    for kind in ("ready", "refused", "redeemed", "ready"):
        silent.show(kind)
    assert silent.played == [] and silent.problem
    assert len(tried) == 1  # tried once, not again for every tune


def test_kivy_plays_the_sounds_through_sdl(tmp_path):
    """The real Kivy audio provider loads and plays each WAV (SDL's dummy driver)."""
    code = ("import os\nos.environ['KIVY_NO_ARGS'] = '1'\n"
            "from kiosk.ui.sounds import Sounds\n"
            "s = Sounds(volume=0.5)\n"
            "for kind in ('ready', 'refused', 'redeemed'):\n    s.show(kind)\n"
            "print(','.join(s.played), s.problem or 'ok')\n")
    env = dict(os.environ, SDL_AUDIODRIVER="dummy", KIVY_HOME=str(tmp_path),
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "ready,refused,done ok"


def test_sounds_follow_the_controller_signals():
    class Gpio:
        def __init__(self):
            self.kinds = []

        def show(self, kind):
            self.kinds.append(kind)

        def describe(self):
            return {"led": "GPIO17"}

    gpio, loaded = Gpio(), []
    both = sounds.Together(gpio, sounds.Sounds(loader=lambda p: loaded.append(p) or FakeSound(p)))
    both.show("ready")
    assert gpio.kinds == ["ready"] and both.sounds.played == ["ready"]
    assert both.describe() == {"led": "GPIO17"}
    assert not hasattr(sounds.Together(None, sounds.Sounds(mute=True)), "describe")


# -- language choice in a real window ---------------------------------------------------
needs_display = pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs an X display (xvfb-run)")


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    from kiosk.ui.kivyconf import configure_kivy

    configure_kivy(width=800, height=480, home=Path(tempfile.mkdtemp(prefix="kiosk-test-kivy-")))
    from kivy.base import EventLoop

    EventLoop.ensure_window()
    EventLoop.window.size = (800, 480)
    from kiosk.ui import parts as kparts
    from kiosk.ui.harness import Harness
    from kiosk.ui.kivyconf import post

    built = demo.build(tmp_path / "demo", cards=False)
    text = built.config.read_text()
    start, end = text.index("[camera]"), text.index("[gpio]")
    built.config.write_text(text[:start] + '[camera]\nsource = "none"\n\n[printer]\nurl = "none"\n\n'
                            + text[end:])
    parts = kparts.build(config.load(built.config), post=post, with_camera=False)
    parts.controller.signals.sounds.mute = True
    harness = Harness(parts.controller)
    yield harness, parts, built
    harness.close()
    parts.stop()


def _on(h, screen):
    """``screen`` is shown and takes touches (no transition running)."""
    return h.until(lambda: h.app.sm.current == screen and not h.app.sm.transition.is_active)


@needs_display
def test_customer_switches_language_on_the_verdict_and_done_screens(app):
    h, parts, built = app
    c = parts.controller
    h.app.deliver_scan(built.payloads["ready-coffee"])
    assert _on(h, "verdict")
    bar = h.widget("languages")
    assert [b.text for b in reversed(bar.children)] == ["English", "O\u02bbzbekcha", "Қазақша", "Русский"]
    token = c.token
    h.tap(bar.button("ru"))
    assert h.until(lambda: h.widget("title").text == "Бесплатный кофе")
    assert h.widget("confirm").text == "Подтвердить" and bar.button("ru").chosen
    assert c.token == token  # the same verdict, only its words changed
    h.tap_id("confirm")
    assert _on(h, "done")
    assert h.widget("headline").text == tr("Redeemed", "ru")
    h.tap(h.widget("languages").button("kk"))
    assert h.until(lambda: h.widget("headline").text == tr("Redeemed", "kk"))
    assert h.until(lambda: not h.widget("next_button").disabled)  # Done's double-tap guard
    h.tap_id("next_button")
    assert _on(h, "idle")
    assert c.lang == "en"  # the next customer starts in the kiosk's language


@needs_display
def test_refusal_screen_shows_the_reward_and_the_next_step(app):
    h, parts, built = app
    h.app.deliver_scan(built.payloads["already-used"])
    assert _on(h, "verdict")
    assert h.widget("type_line").text == "Free coffee"
    assert h.widget("detail").text == "Redeemed 95 min ago at counter-2"
    assert h.widget("next_step").text.startswith("Each reward can be used once")


@needs_display
def test_language_picked_by_staff_stays_until_staff_change_it(app):
    h, parts, built = app
    c = parts.controller
    c.open_staff()
    for key in built.pin:
        c.pin_key(key)
    c.pin_key("ok")
    assert _on(h, "staff")
    h.tap(h.widget("languages").button("uz"))
    assert h.until(lambda: h.widget("page_title").text == tr("Staff menu", "uz"))
    h.tap_id("close")
    assert _on(h, "idle") and c.lang == "uz"
    h.app.deliver_scan(built.payloads["expired"])  # a customer comes and goes
    assert _on(h, "verdict")
    h.tap_id("cancel")
    assert _on(h, "idle")
    assert c.lang == "uz" and h.widget("instruction").text == tr("Show your wallet card's QR code to the camera", "uz")
