"""LED, buzzer and confirm button patterns on gpiozero's MockFactory.

Pin histories (``MockPin.states``) are checked state by state, and each change's time
against the pattern's schedule: never early (a pattern that is too short is a bug),
and at most LATE seconds late. gpiozero's own ``assert_states_and_times`` allows
50 ms either way; on this shared 2-core machine a busy moment delays a thread more
than that, so lateness gets more room and earliness none.
"""

import time

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from kiosk.errors import ConfigError
from kiosk.hardware.signals import PATTERNS, Signals

GREEN, RED, BUZZER, BUTTON = 17, 27, 22, 5


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


@pytest.fixture
def signals(factory):
    s = Signals.from_config({"green_led": GREEN, "red_led": RED, "buzzer": BUZZER,
                             "button": BUTTON, "bounce_ms": 200}, pin_factory=factory)
    yield s
    s.close()


LATE = 0.25


def pins(factory, *numbers):
    found = [factory.pin(n) for n in numbers]
    for p in found:
        p.cleared_at = time.monotonic()  # clear_states() stamps this moment (+ microseconds)
        p.clear_states()
    return found


def assert_timeline(pin, signals, expected):
    """``expected``: [(seconds after the pattern began, state), ...] after the initial state."""
    assert [s.state for s in pin.states[1:]] == [state for _, state in expected], pin.states
    at = pin.cleared_at
    for change, (want, _) in zip(pin.states[1:], expected, strict=True):
        at += change.timestamp
        offset = at - signals.started_at
        assert want - 0.005 <= offset <= want + LATE, (want, offset, pin.states)


def play(signals, kind):
    signals.show(kind)
    assert signals.wait_idle(10)


def test_ready_green_stays_on_with_one_short_beep(signals, factory):
    green, red, buzzer = pins(factory, GREEN, RED, BUZZER)
    play(signals, "ready")
    assert_timeline(green, signals, [(0, True)])  # stays on: waiting for staff
    assert_timeline(buzzer, signals, [(0, True), (0.1, False)])
    assert len(red.states) == 1 and not red.state


def test_redeemed_green_two_short_beeps_then_off(signals, factory):
    green, red, buzzer = pins(factory, GREEN, RED, BUZZER)
    play(signals, "redeemed")
    assert_timeline(green, signals, [(0, True), (2.0, False)])
    assert_timeline(buzzer, signals, [(0, True), (0.1, False), (0.2, True), (0.3, False)])
    assert len(red.states) == 1


def test_refused_red_one_long_beep(signals, factory):
    green, red, buzzer = pins(factory, GREEN, RED, BUZZER)
    play(signals, "refused")
    assert_timeline(red, signals, [(0, True), (2.0, False)])
    assert_timeline(buzzer, signals, [(0, True), (0.6, False)])
    assert len(green.states) == 1


def test_error_red_stays_on_three_beeps_and_idle_turns_all_off(signals, factory):
    green, red, buzzer = pins(factory, GREEN, RED, BUZZER)
    play(signals, "error")
    assert_timeline(red, signals, [(0, True)])
    assert_timeline(buzzer, signals, [(0, True), (0.1, False), (0.2, True), (0.3, False),
                                      (0.4, True), (0.5, False)])
    play(signals, "idle")
    assert not red.state and not green.state and not buzzer.state


def test_patterns_are_distinct_by_rhythm():
    rhythms = {k: PATTERNS[k].beeps for k in ("ready", "redeemed", "refused", "error")}
    assert len(set(rhythms.values())) == 4


def test_show_returns_at_once_and_a_new_pattern_interrupts_the_old(signals, factory):
    green, red, buzzer = pins(factory, GREEN, RED, BUZZER)
    signals.show("redeemed")  # a 2-second pattern
    assert len(green.states) < 3  # returned before the pattern ended
    signals.show("refused")
    assert signals.wait_idle(10)
    assert not green.state and not red.state and not buzzer.state
    assert red.states[-2].state is True  # the refused pattern ran to its end


def test_button_confirms_exactly_once_per_press(signals, factory):
    button = factory.pin(BUTTON)  # pulled up: pressed = low
    presses = []
    signals.on_confirm = lambda: presses.append(1)
    button.drive_low()
    assert presses == [1]
    button.drive_high()  # contact bounce: released and pressed again at once
    button.drive_low()
    assert presses == [1]
    button.drive_high()
    time.sleep(0.3)  # released for longer than the 200 ms bounce time
    button.drive_low()
    assert presses == [1, 1]
    button.drive_low()  # held: no more confirms
    assert presses == [1, 1]


def test_button_callback_errors_do_not_break_the_button(signals, factory):
    button = factory.pin(BUTTON)

    def boom():
        raise RuntimeError("ui gone")

    signals.on_confirm = boom
    button.drive_low()  # logged, not raised into gpiozero's thread
    assert signals.describe()["button"] is True


def test_one_rgb_led_and_a_tonal_buzzer():
    factory = MockFactory(pin_class=MockPWMPin)
    s = Signals.from_config({"rgb_led": [5, 6, 13], "buzzer": 22, "buzzer_type": "tonal"},
                            pin_factory=factory)
    try:
        r, g, b, buzzer = pins(factory, 5, 6, 13, 22)
        play(s, "refused")
        assert_timeline(r, s, [(0, 1.0), (2.0, 0.0)])
        assert len(g.states) == 1 and len(b.states) == 1
        assert_timeline(buzzer, s, [(0, 0.5), (0.6, 0.0)])  # PWM at 50 %
        play(s, "redeemed")
        assert g.states[1].state == 1.0 and g.states[-1].state == 0.0
        assert s.describe() == {"led": "RgbLed", "buzzer": "tonal", "button": False, "problem": None}
    finally:
        s.close()
        factory.reset()


def test_no_pins_means_everything_is_off_and_show_is_harmless():
    s = Signals.from_config({})
    s.show("redeemed")
    assert s.wait_idle(1) and s.describe()["led"] is None
    s.close()


def test_only_a_buzzer(factory):
    s = Signals.from_config({"buzzer": BUZZER}, pin_factory=factory)
    [buzzer] = pins(factory, BUZZER)
    play(s, "ready")
    assert [st.state for st in buzzer.states] == [False, True, False]
    s.close()


@pytest.mark.parametrize("gpio,words", [
    ({"rgb_led": [1, 2]}, "three pins"),
    ({"buzzer": 22, "buzzer_type": "piezo"}, "active or tonal"),
    ({"green_led": 3.5}, "GPIO number"),
    ({"green_led": "GPIO99"}, "pins"),
])
def test_bad_gpio_config_is_explained(factory, gpio, words):
    with pytest.raises(ConfigError, match=words):
        Signals.from_config(gpio, pin_factory=factory)


def test_unknown_kind_is_an_error(signals):
    with pytest.raises(ValueError, match="unknown signal"):
        signals.show("party")


def test_pins_configured_but_no_gpio_keeps_the_kiosk_running():
    import subprocess
    import sys

    code = ("from kiosk.hardware.signals import Signals\n"
            "s = Signals.from_config({'green_led': 17, 'button': 5})\n"
            "s.show('redeemed'); assert s.wait_idle(1); print(s.describe()['problem'])")
    env = {"GPIOZERO_PIN_FACTORY": "no-such-factory", "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "GPIO not usable" in run.stdout and "no-such-factory" in run.stdout
