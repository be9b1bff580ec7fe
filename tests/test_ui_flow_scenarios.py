"""A busy counter, driven from outside like a person: the kiosk runs as its own process
in a real Kivy window (tests/ui_flow_app.py, Xvfb under ``make test``); taps are X
mouse clicks at the screen coordinates of the rendered buttons (xdotool), a USB
barcode scanner in keyboard mode is ``xdotool type`` + Return into the window (the
kiosk's keyboard wedge reads it), and the camera sees a card image while the test
"holds" it. Outcomes are read from the kiosk's own SQLite file and from the screen.

Set FLOW_SHOTS=DIR to keep screenshots of the new states.
"""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

if not os.environ.get("DISPLAY"):
    pytest.skip("needs an X display: run under xvfb-run (make test does)", allow_module_level=True)
if shutil.which("xdotool") is None:
    pytest.skip("needs xdotool (scripts/system-deps.sh installs it)", allow_module_level=True)

from kiosk.ui import demo  # noqa: E402

HERE = Path(__file__).resolve().parent
COFFEE, VOUCHER = "DEMO-COFFEE-0001", "DEMO-VOUCH-0003"


def xdo(*args: str, timeout: float = 10) -> str:
    out = subprocess.run(["xdotool", *args], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise AssertionError(f"xdotool {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


class Counter:
    """One kiosk process and the hands of the person at its counter."""

    def __init__(self, tmp: Path, ui: dict):
        self.built = demo.build(tmp / "demo")
        text = self.built.config.read_text()
        for key, value in ui.items():
            line = f"{key} = {json.dumps(value)}"
            if f"\n{key} = " in text:
                start = text.index(f"\n{key} = ") + 1
                text = text[:start] + line + text[text.index("\n", start):]
            else:
                text = text.replace("[ui]\n", f"[ui]\n{line}\n")
        self.built.config.write_text(text)
        self.probe, self.camera = tmp / "probe.json", tmp / "camera.png"
        self.shots = Path(os.environ["FLOW_SHOTS"]) if os.environ.get("FLOW_SHOTS") else tmp / "shots"
        self.shots.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock", PYTHONPATH=str(HERE.parent))
        self.log = open(tmp / "kiosk.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "ui_flow_app.py"), str(self.built.config), str(self.probe),
             str(self.camera)], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        assert self.wait(lambda p: p["screen"] == "idle", 60), self.tail()
        found = xdo("search", "--sync", "--pid", str(self.proc.pid), "--name", "redeem-kiosk",
                    timeout=30).split()
        self.window = found[-1]
        xdo("windowfocus", "--sync", self.window)
        time.sleep(0.5)  # the first frames after the window appeared

    # -- what the screen shows ---------------------------------------------------------
    def state(self) -> dict:
        for _ in range(50):
            try:
                return json.loads(self.probe.read_text(encoding="utf-8"))
            except (FileNotFoundError, json.JSONDecodeError):
                time.sleep(0.02)
        raise AssertionError("the kiosk wrote no probe")

    def wait(self, predicate, seconds: float = 10) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"the kiosk exited: {self.tail()}")
            try:
                if predicate(json.loads(self.probe.read_text(encoding="utf-8"))):
                    return True
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                pass
            time.sleep(0.03)
        return False

    def on(self, screen: str, seconds: float = 10) -> bool:
        return self.wait(lambda p: p["screen"] == screen, seconds)

    def text(self, wid: str) -> str:
        return self.state()["widgets"][wid]["text"]

    def tail(self) -> str:
        self.log.flush()
        return (self.probe.parent / "kiosk.log").read_text()[-3000:]

    # -- hands -------------------------------------------------------------------------
    def _centre(self, wid: str) -> tuple[int, int]:
        assert self.wait(lambda p: p["widgets"][wid]["visible"], 5), f"{wid} is not on screen"
        x, y, w, h = self.state()["widgets"][wid]["rect"]
        return int(x + w / 2), int(y + h / 2)

    def tap(self, wid: str, *, times: int = 1, gap_ms: int = 150) -> None:
        x, y = self._centre(wid)
        xdo("mousemove", "--window", self.window, str(x), str(y))
        time.sleep(0.05)  # a finger arrives before it taps
        xdo("click", "--repeat", str(times), "--delay", str(gap_ms), "1")

    def press(self, wid: str) -> None:
        """Finger down on ``wid`` (and kept there until :meth:`release`)."""
        x, y = self._centre(wid)
        xdo("mousemove", "--window", self.window, str(x), str(y))
        time.sleep(0.05)
        xdo("mousedown", "1")

    def release(self) -> None:
        xdo("mouseup", "1")

    def usb_scan(self, code: str) -> None:
        """A USB barcode scanner in keyboard mode: fast keystrokes, then Return.

        The wedge times keystrokes when the UI handles them; on this shared machine a
        slow frame can split a burst into a lost part and a short wrong code. Like a
        person at the counter, scan once more when the kiosk did not read the code."""
        for _ in range(3):
            before = self.state()["scans"]
            xdo("type", "--delay", "8", code)
            xdo("key", "Return")
            if self.wait(lambda p, n=before: p["scans"] > n, 3) and self.state()["last_scan"] == code:
                return
        raise AssertionError(f"the kiosk never read {code} from the USB scanner: {self.state()['last_scan']!r}")

    def hold_card(self, name: str) -> None:
        shutil.copy(next(self.built.cards_dir.glob(f"*-{name}.png")), self.camera.with_suffix(".new.png"))
        self.camera.with_suffix(".new.png").replace(self.camera)

    def take_card_away(self) -> None:
        self.camera.unlink(missing_ok=True)

    def type_pin_and_open(self, item: str) -> None:
        self.tap("staff_button")
        assert self.on("pin")
        for digit in self.built.pin:
            self.tap(f"keypad:{digit}")
        self.tap("keypad:ok")
        assert self.on("staff")
        self.tap(item)

    def screenshot(self, name: str) -> Path:
        from PIL import ImageGrab

        time.sleep(0.3)
        geometry = dict(line.split("=") for line in
                        xdo("getwindowgeometry", "--shell", self.window).splitlines())
        x, y, w, h = (int(geometry[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
        path = self.shots / f"{name}.png"
        ImageGrab.grab(bbox=(x, y, x + w, y + h), xdisplay=None).save(path)
        return path

    # -- what was recorded -------------------------------------------------------------
    def db(self, sql: str, *params) -> list[tuple]:
        conn = sqlite3.connect(self.built.data_dir / "kiosk.sqlite", timeout=10)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def redeemed(self) -> list[str]:
        """Last four characters of the codes redeemed here (undone ones included)."""
        return [r[0] for r in self.db("SELECT masked_code FROM redemptions WHERE origin = 'local' "
                                      "AND kind = 'redeem' ORDER BY seq")]

    def stop(self) -> None:
        self.take_card_away()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture
def counter(tmp_path):
    made = []

    def make(**ui) -> Counter:
        kiosk = Counter(tmp_path / f"k{len(made)}", ui)
        made.append(kiosk)
        return kiosk

    yield make
    for kiosk in made:
        kiosk.stop()


def test_next_customers_card_waits_while_a_ready_reward_is_pending(counter):
    """A's coffee is ready; B holds a voucher card under the camera. Staff, still looking
    at A, tap Confirm: A's coffee is redeemed, then B's voucher is shown."""
    k = counter()
    k.usb_scan(COFFEE)
    assert k.wait(lambda p: p["widgets"]["title"]["text"] == "Free coffee")
    k.hold_card("ready-voucher")
    assert k.wait(lambda p: p["waiting"] or p["widgets"]["title"]["text"] != "Free coffee", 10), \
        "the camera never saw B's card"
    time.sleep(0.5)
    assert k.text("title") == "Free coffee", "B's card replaced A's pending reward"
    assert k.wait(lambda p: p["widgets"]["notice"]["visible"], 3)
    assert "Next customer waiting" in k.text("notice")
    k.screenshot("verdict-ready-next-customer-waiting")
    k.tap("confirm")
    assert k.on("done")
    assert k.redeemed() == ["0001"]
    assert k.wait(lambda p: p["screen"] == "verdict" and p["widgets"]["title"]["text"] == "Gift voucher")
    assert k.redeemed() == ["0001"]


def test_confirm_redeems_the_verdict_the_finger_touched_down_on(counter):
    """Finger down on A's Confirm; B's code arrives from the USB scanner before the
    finger lifts: the release confirms A, never B."""
    k = counter()
    k.usb_scan(COFFEE)
    assert k.wait(lambda p: p["widgets"]["title"]["text"] == "Free coffee")
    k.press("confirm")
    k.usb_scan(VOUCHER)
    time.sleep(0.6)
    k.release()
    assert k.on("done")
    assert k.redeemed() == ["0001"]


@pytest.mark.parametrize("gap_ms", [150, 200, 300])
def test_a_double_tap_on_confirm_never_skips_done(counter, gap_ms):
    k = counter()
    k.usb_scan(COFFEE)
    assert k.wait(lambda p: p["widgets"]["title"]["text"] == "Free coffee")
    # The second tap comes gap_ms after the first, or, when this busy machine draws Done
    # later than that, just after Done appeared: the moment a finger would hit it.
    start = time.monotonic()
    k.tap("confirm")
    assert k.on("done")
    time.sleep(max(0.0, start + gap_ms / 1000 - time.monotonic()))
    xdo("click", "1")
    time.sleep(0.8)
    state = k.state()
    assert state["screen"] == "done", f"Done was skipped: {state['seen']}"
    assert k.redeemed() == ["0001"]
    done = next(i for i, (_, name) in enumerate(state["seen"]) if name == "done")
    assert [name for _, name in state["seen"][done:]] == ["done"]


def test_ready_and_done_look_different(counter):
    from PIL import Image

    k = counter()
    k.usb_scan(COFFEE)
    assert k.wait(lambda p: p["widgets"]["title"]["text"] == "Free coffee")
    ready = Image.open(k.screenshot("verdict-ready")).convert("RGB")
    k.tap("confirm")
    assert k.on("done")
    done = Image.open(k.screenshot("done-redeemed")).convert("RGB")
    # the background (a corner pixel): green for Ready, light for Done
    r, g, b = ready.getpixel((3, 3))
    assert g > r + 40 and sum((r, g, b)) < 400
    assert sum(done.getpixel((3, 3))) > 600


def test_a_double_tap_on_cancel_does_not_cancel_the_customer_shown_next(counter):
    k = counter()
    k.usb_scan(COFFEE)
    assert k.wait(lambda p: p["widgets"]["title"]["text"] == "Free coffee")
    k.hold_card("ready-voucher")
    assert k.wait(lambda p: p["waiting"] or p["widgets"]["title"]["text"] == "Gift voucher")
    k.tap("cancel", times=2, gap_ms=150)  # meant for the coffee only
    assert k.wait(lambda p: p["screen"] == "verdict" and p["widgets"]["title"]["text"] == "Gift voucher")
    time.sleep(0.8)
    assert k.state()["screen"] == "verdict", k.state()["seen"]
    assert k.text("title") == "Gift voucher"


def test_a_card_held_past_the_timeout_warns_and_is_kept_as_unconfirmed(counter):
    """Staff hand over the coffee and forget Confirm while the card stays in front of
    the camera: the screen warns, then the timeout is recorded and shown in history."""
    k = counter(verdict_timeout=4)
    k.hold_card("ready-coffee")
    assert k.wait(lambda p: p["widgets"]["title"]["text"] == "Free coffee")
    assert k.wait(lambda p: p["warning"] > 0, 4), "no warning before the timeout"
    assert "Not confirmed yet" in k.text("notice")
    k.screenshot("verdict-ready-timeout-warning")
    assert k.on("idle", 6)
    time.sleep(2)  # the card is still held: it does not come back as a new verdict
    assert k.state()["screen"] == "idle"
    assert k.redeemed() == []
    assert k.wait(lambda p: True) and _audit_kinds(k).count("timeout") == 1
    k.take_card_away()
    k.type_pin_and_open("history")
    assert k.on("history")
    assert k.wait(lambda p: "Not confirmed (timed out): Free coffee" in p["widgets"]["body"]["text"])


def test_auto_confirm_redeems_a_ready_verdict_nobody_confirmed(counter):
    k = counter(verdict_timeout=3, auto_confirm=True)
    k.usb_scan(COFFEE)
    assert k.wait(lambda p: p["widgets"]["title"]["text"] == "Free coffee")
    assert k.on("done", 8)
    assert k.redeemed() == ["0001"]


def _audit_kinds(k: Counter) -> list[str]:
    for _ in range(50):
        try:
            return [r[0] for r in k.db("SELECT kind FROM audit ORDER BY id")]
        except sqlite3.OperationalError:
            time.sleep(0.1)
    raise AssertionError("no audit table")


def test_the_same_card_right_after_done_says_redeemed_just_now(counter):
    k = counter(done_timeout=3)
    k.hold_card("ready-coffee")
    assert k.wait(lambda p: p["widgets"]["title"]["text"] == "Free coffee")
    k.tap("confirm")
    assert k.on("done")
    k.take_card_away()
    assert k.on("idle", 8)
    k.usb_scan(COFFEE)  # the same card again, now on the USB scanner
    assert k.on("done"), k.state()["seen"]
    assert k.text("headline") == "Redeemed just now here"
    k.screenshot("done-redeemed-just-now")
    assert k.redeemed() == ["0001"]
    kinds = _audit_kinds(k)
    assert {"scan", "verdict", "confirm", "again"} <= set(kinds)


def test_a_typed_code_is_not_replaced_by_the_camera_and_staff_return_to_the_keypad(counter):
    k = counter()
    k.type_pin_and_open("keypad")
    assert k.on("keypad")
    for key in COFFEE:
        k.tap(f"keypad:{key}")
    assert k.wait(lambda p: p["widgets"]["code"]["text"] == COFFEE)
    k.tap("check")
    assert k.wait(lambda p: p["screen"] == "verdict" and p["widgets"]["title"]["text"] == "Free coffee")
    k.hold_card("expired")  # a customer's card reaches the camera meanwhile
    time.sleep(1.5)  # the camera sees it (15 frames a second)
    assert k.state()["screen"] == "verdict" and k.text("title") == "Free coffee"
    k.take_card_away()
    k.tap("confirm")
    assert k.on("done")
    assert k.redeemed() == ["0001"]
    assert k.wait(lambda p: not p["widgets"]["next_button"]["disabled"], 3)
    k.tap("next_button")
    assert k.on("keypad"), k.state()["seen"]  # not the PIN, not Idle


def test_undo_asks_first_and_reprint_is_off_once_undone(counter):
    k = counter()
    k.usb_scan(COFFEE)
    assert k.wait(lambda p: p["widgets"]["title"]["text"] == "Free coffee")
    k.tap("confirm")
    assert k.on("done")
    assert k.wait(lambda p: not p["widgets"]["next_button"]["disabled"], 3)
    k.tap("next_button")
    assert k.on("idle")
    k.type_pin_and_open("undo")
    assert k.on("undo")
    assert k.wait(lambda p: not p["widgets"]["undo"]["disabled"])
    k.tap("undo", times=2, gap_ms=200)  # a double tap only asks: its 2nd tap hits nothing
    assert k.wait(lambda p: p["widgets"]["yes_undo"]["visible"], 3)
    assert "Undo this redemption?" in k.text("message")
    k.screenshot("undo-are-you-sure")
    time.sleep(0.5)
    assert k.db("SELECT count(*) FROM redemptions WHERE kind = 'void'") == [(0,)]
    assert k.state()["widgets"]["yes_undo"]["visible"]
    k.tap("yes_undo")
    assert k.wait(lambda p: p["widgets"]["message"]["text"] == "Undone: the reward can be used again")
    assert k.db("SELECT count(*) FROM redemptions WHERE kind = 'void'") == [(1,)]
    assert k.wait(lambda p: p["widgets"]["reprint"]["disabled"], 3)
    assert "undo" in _audit_kinds(k)
