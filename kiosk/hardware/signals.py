"""LEDs, buzzer and the staff confirm button (gpiozero), all optional.

``Signals.show(kind)`` plays a short pattern for ``ready``, ``redeemed``, ``refused``,
``error`` or ``idle`` and returns at once: one small worker thread plays patterns,
and a new ``show`` interrupts the one playing, so the UI never waits for a beep. The
patterns differ in rhythm (one short beep, two short beeps, one long beep, three
short beeps), so a plain on/off buzzer tells them apart; a tonal buzzer also plays
them high, higher and low.

Pins come from ``[gpio]``; a part whose pin is absent is simply off. gpiozero is
imported only when a pin is configured, and tests use its ``MockFactory``.

``on_confirm`` is called once per physical press of the confirm button, from
gpiozero's callback thread: the UI must hop to its main thread (``Clock.schedule_once``).
Contact bounce is filtered twice: gpiozero's ``bounce_time`` where the pin driver
supports it, and here, where a press only counts after the button was released for
longer than the bounce time.
"""

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kiosk.errors import ConfigError
from kiosk.i18n import Msg

log = logging.getLogger(__name__)

KINDS = ("ready", "redeemed", "refused", "idle", "error")


@dataclass(frozen=True)
class Pattern:
    """``led``: (seconds, colour) segments, then ``led_rest`` stays on (None = off).
    ``beeps``: (on, off) seconds pairs; ``tone``: Hz for a tonal buzzer."""

    led: tuple[tuple[float, str | None], ...]
    led_rest: str | None
    beeps: tuple[tuple[float, float], ...]
    tone: float

    def events(self) -> list[tuple[float, str, object]]:
        """(time, "led" | "buzzer", value) changes, in time order, starting at 0."""
        out: list[tuple[float, str, object]] = [(0.0, "buzzer", False)]
        t = 0.0
        for seconds, colour in self.led:
            out.append((t, "led", colour))
            t += seconds
        out.append((t, "led", self.led_rest))
        t = 0.0
        for on, off in self.beeps:
            out += [(t, "buzzer", True), (t + on, "buzzer", False)]
            t += on + off
        return sorted(out, key=lambda e: e[0])

    @property
    def duration(self) -> float:
        return max(sum(s for s, _ in self.led), sum(a + b for a, b in self.beeps))


PATTERNS: dict[str, Pattern] = {
    "idle": Pattern((), None, (), 440.0),
    "ready": Pattern((), "green", ((0.1, 0.0),), 880.0),
    "redeemed": Pattern(((2.0, "green"),), None, ((0.1, 0.1), (0.1, 0.0)), 1320.0),
    "refused": Pattern(((2.0, "red"),), None, ((0.6, 0.0),), 220.0),
    "error": Pattern((), "red", ((0.1, 0.1), (0.1, 0.1), (0.1, 0.0)), 440.0),
}


# -- output parts -----------------------------------------------------------------
class _TwoLeds:
    """A green and/or a red LED; amber is both."""

    def __init__(self, green=None, red=None):
        self.green, self.red = green, red

    def show(self, colour: str | None) -> None:
        for led, wanted in ((self.green, ("green", "amber")), (self.red, ("red", "amber"))):
            if led is not None:
                led.value = colour in wanted

    def close(self) -> None:
        for led in (self.green, self.red):
            if led is not None:
                led.close()


class _RgbLed:
    COLOURS = {"green": (0, 1, 0), "red": (1, 0, 0), "amber": (1, 1, 0), None: (0, 0, 0)}

    def __init__(self, rgb):
        self.rgb = rgb

    def show(self, colour: str | None) -> None:
        self.rgb.color = self.COLOURS[colour]

    def close(self) -> None:
        self.rgb.close()


class _Buzzer:
    def __init__(self, device, tonal: bool):
        self.device, self.tonal = device, tonal

    def set(self, on: bool, tone: float) -> None:
        if self.tonal:
            from gpiozero.tones import Tone

            if on:
                self.device.play(Tone(float(tone)))
            else:
                self.device.stop()
        else:
            self.device.value = on

    def close(self) -> None:
        self.device.close()


# -- the signals ------------------------------------------------------------------------
class Signals:
    """Physical feedback at the counter. Every part is optional."""

    def __init__(self, *, green=None, red=None, rgb=None, buzzer=None, tonal: bool = False,
                 button=None, bounce_s: float = 0.05, problem: str | None = None):
        self.light = _RgbLed(rgb) if rgb is not None else (
            _TwoLeds(green, red) if (green or red) else None)
        self.buzzer = _Buzzer(buzzer, tonal) if buzzer is not None else None
        self.button, self.bounce_s, self.problem = button, bounce_s, problem
        self.on_confirm: Callable[[], None] | None = None
        self._cv = threading.Condition()
        self._next: str | None = None
        self._playing = False
        self._closed = False
        self._worker: threading.Thread | None = None
        self._down, self._released_at = False, None
        self.started_at: float | None = None  # time.monotonic() the last pattern began
        if button is not None:
            button.when_pressed = self._pressed
            button.when_released = self._released

    # -- patterns -----------------------------------------------------------------
    def show(self, kind: str) -> None:
        """Start the pattern for ``kind``; returns at once."""
        if kind not in PATTERNS:
            raise ValueError(f"unknown signal {kind!r}; one of {', '.join(KINDS)}")
        if self.light is None and self.buzzer is None:
            return
        with self._cv:
            if self._closed:
                return
            self._next = kind
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="signals", daemon=True)
                self._worker.start()
            self._cv.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until no pattern is playing (for tests and the CLI). True if idle."""
        with self._cv:
            return self._cv.wait_for(lambda: self._next is None and not self._playing, timeout)

    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._next is not None or self._closed)
                if self._closed:
                    return
                kind, self._next, self._playing = self._next, None, True
            try:
                self._play(PATTERNS[kind])
            except Exception:  # a GPIO error must not kill the worker
                log.exception("signal pattern %s failed", kind)
            with self._cv:
                self._playing = False
                self._cv.notify_all()

    def _play(self, pattern: Pattern) -> None:
        start = self.started_at = time.monotonic()
        for at, part, value in pattern.events():
            if self._interrupted(start + at):
                return
            if part == "led" and self.light is not None:
                self.light.show(value)
            elif part == "buzzer" and self.buzzer is not None:
                self.buzzer.set(bool(value), pattern.tone)

    def _interrupted(self, deadline: float) -> bool:
        """Wait until ``deadline``; True if a new pattern or close() came first."""
        with self._cv:
            while self._next is None and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cv.wait(remaining)
            return True

    # -- confirm button ---------------------------------------------------------------
    def _pressed(self) -> None:
        now = time.monotonic()
        with self._cv:
            if self._down:
                return
            self._down = True
            if self._released_at is not None and now - self._released_at < self.bounce_s:
                return  # the contact bounced on release: still the same press
        callback = self.on_confirm
        if callback is not None:
            try:
                callback()
            except Exception:
                log.exception("confirm button callback failed")

    def _released(self) -> None:
        with self._cv:
            self._down, self._released_at = False, time.monotonic()

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        """Stop patterns, switch everything off and release the pins."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=2)
        for part in (self.light, self.buzzer, self.button):
            if part is None:
                continue
            try:
                if part is self.light:
                    part.show(None)
                part.close()
            except Exception:
                log.debug("closing %r failed", part, exc_info=True)

    def describe(self) -> dict:
        """Which parts are present (for doctor/status)."""
        return {"led": type(self.light).__name__.strip("_") if self.light else None,
                "buzzer": ("tonal" if self.buzzer.tonal else "active") if self.buzzer else None,
                "button": self.button is not None, "problem": self.problem}

    @classmethod
    def from_config(cls, section, pin_factory=None) -> "Signals":
        """From ``[gpio]`` (a config Section or a dict). Absent pins: that part is off.

        If the pins are configured but no GPIO is usable (not a Raspberry Pi), the
        kiosk still runs: every part is off and ``problem`` says why.
        """
        return _build(_Keys(section), pin_factory)


class _Keys:
    """Reads ``[gpio]`` from a Section or a plain dict, with clear errors."""

    def __init__(self, section):
        self.data = section.data if hasattr(section, "data") else dict(section or {})
        self.section = section if hasattr(section, "error") else None

    def error(self, key: str, problem) -> ConfigError:
        if self.section is not None:
            return self.section.error(key, problem)
        return ConfigError(Msg("[gpio] {key}: {problem}", key=key, problem=problem))

    def pin(self, key: str):
        value = self.data.get(key)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str):
            return value
        raise self.error(key, Msg("must be a GPIO number or pin name like \"GPIO17\", not {value}", value=repr(value)))

    def get(self, key: str, kind: type, default):
        value = self.data.get(key, default)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise self.error(key, Msg("must be {want}, not {value}", want=kind.__name__, value=repr(value)))
        return value


def _build(keys: _Keys, pin_factory) -> Signals:
    green, red, buzzer, button = (keys.pin(k) for k in ("green_led", "red_led", "buzzer", "button"))
    rgb = keys.data.get("rgb_led")
    if rgb is not None and (not isinstance(rgb, list) or len(rgb) != 3):
        raise keys.error("rgb_led", Msg("must be a list of three pins [red, green, blue]"))
    buzzer_type = keys.get("buzzer_type", str, "active")
    if buzzer_type not in ("active", "tonal"):
        raise keys.error("buzzer_type", Msg("must be active or tonal, not {value}", value=repr(buzzer_type)))
    bounce_s = keys.get("bounce_ms", int, 50) / 1000
    if not any(p is not None for p in (green, red, rgb, buzzer, button)):
        return Signals(bounce_s=bounce_s)
    try:
        return _devices(keys, green, red, rgb, buzzer, buzzer_type, button, bounce_s, pin_factory)
    except ConfigError:
        raise
    except Exception as exc:
        from gpiozero.exc import BadPinFactory, PinInvalidPin

        if isinstance(exc, PinInvalidPin | ValueError) and not isinstance(exc, BadPinFactory):
            raise keys.error("pins", str(exc)) from None
        log.warning("GPIO signals are off: %s", exc)
        return Signals(bounce_s=bounce_s, problem=f"GPIO not usable: {exc}")


def _devices(keys: _Keys, green, red, rgb, buzzer, buzzer_type, button, bounce_s, factory) -> Signals:
    import gpiozero  # lazy: only when a pin is configured
    from gpiozero.tones import Tone

    made: list = []

    def make(cls, *args, **kwargs):
        made.append(cls(*args, pin_factory=factory, **kwargs))
        return made[-1]

    try:
        active_high = keys.get("active_high", bool, True)
        parts: Mapping = {
            "green": make(gpiozero.LED, green, active_high=active_high) if green is not None else None,
            "red": make(gpiozero.LED, red, active_high=active_high) if red is not None else None,
            "rgb": make(gpiozero.RGBLED, *rgb, active_high=active_high, pwm=False) if rgb else None,
        }
        if buzzer is not None and buzzer_type == "tonal":
            parts["buzzer"] = make(gpiozero.TonalBuzzer, buzzer, mid_tone=Tone(880.0), octaves=2)
        elif buzzer is not None:
            parts["buzzer"] = make(gpiozero.Buzzer, buzzer,
                                   active_high=keys.get("buzzer_active_high", bool, True))
        if button is not None:
            parts["button"] = make(gpiozero.Button, button, pull_up=keys.get("button_pull_up", bool, True),
                                   bounce_time=bounce_s or None)
    except BaseException:
        for device in made:
            device.close()
        raise
    return Signals(tonal=buzzer_type == "tonal", bounce_s=bounce_s, **parts)
