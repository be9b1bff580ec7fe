"""The keyboard-wedge input: a USB barcode scanner that types the code and Enter."""

from kiosk.hardware.wedge import KeyboardWedge


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def typed(wedge, clock, text, gap):
    for char in text:
        wedge.feed(char)
        clock.advance(gap)


def make():
    clock, events = Clock(), []
    return KeyboardWedge(events.append, clock=clock), clock, events


def test_a_fast_burst_ending_in_enter_is_a_keyboard_scan():
    wedge, clock, events = make()
    typed(wedge, clock, "KIOSK-1234", 0.01)
    event = wedge.enter()
    assert events == [event]
    assert (event.payload, event.source, event.decoder, event.frame_index) == ("KIOSK-1234", "keyboard", "keyboard", 0)
    assert abs(event.latency_ms - 100.0) < 1e-6  # first key to Enter
    typed(wedge, clock, "https://x.example/r?code=AB12", 0.005)
    assert wedge.enter().frame_index == 1 and len(events) == 2


def test_a_person_typing_is_not_a_scan():
    wedge, clock, events = make()
    typed(wedge, clock, "1234", 0.3)
    assert wedge.enter() is None and events == []


def test_a_pause_inside_the_burst_starts_over():
    wedge, clock, events = make()
    typed(wedge, clock, "xx", 0.01)
    clock.advance(1.0)  # stray keys, then the scanner fires
    typed(wedge, clock, "CODE-77", 0.01)
    assert wedge.enter().payload == "CODE-77"


def test_slow_enter_short_bursts_and_empty_enter_are_ignored():
    wedge, clock, events = make()
    typed(wedge, clock, "CODE-88", 0.01)
    clock.advance(0.5)
    assert wedge.enter() is None
    typed(wedge, clock, "ab", 0.01)
    assert wedge.enter() is None  # shorter than min_length
    assert wedge.enter() is None and events == []


def test_chunks_count_as_typed_at_once_and_reset_forgets():
    wedge, clock, events = make()
    wedge.feed("CODE-")
    clock.advance(0.02)
    wedge.feed("9999")
    assert wedge.pending == "CODE-9999"
    wedge.reset()
    assert wedge.pending == "" and wedge.enter() is None
    wedge.feed("CODE-9999")
    assert wedge.enter().payload == "CODE-9999"


def test_a_slow_screen_can_widen_the_keystroke_gap_from_config(tmp_path):
    """On a device whose UI frames are slow (the virtual Pi, a busy Pi 4), keystrokes
    reach the wedge up to a frame apart: ``[ui] scanner_key_gap_ms`` widens the gap."""
    from kiosk import config
    from kiosk.errors import ConfigError
    from kiosk.ui import settings as ui_settings

    def settings(extra: str):
        path = tmp_path / "kiosk.toml"
        path.write_text('[device]\nid = "k1"\nstore = "s1"\nprogram = "p"\ndata_dir = "data"\n'
                        '[ui]\n' + extra)
        return ui_settings.from_config(config.load(path))

    assert settings("").scanner_key_gap == 0.1
    slow = settings("scanner_key_gap_ms = 250\n")
    clock, events = Clock(), []
    wedge = KeyboardWedge(events.append, max_gap=slow.scanner_key_gap, clock=clock)
    typed(wedge, clock, "KIOSK-1234", 0.2)  # one key per 200 ms frame
    assert wedge.enter() is not None and events[0].payload == "KIOSK-1234"
    default = KeyboardWedge(events.append, clock=clock)
    typed(default, clock, "KIOSK-1234", 0.2)
    assert default.enter() is None  # the default would have split it
    try:
        settings("scanner_key_gap_ms = 5000\n")
    except ConfigError as exc:
        assert "scanner_key_gap_ms" in str(exc)
    else:
        raise AssertionError("a 5 s gap was accepted")


def test_a_slow_frame_does_not_cut_a_scan_in_two():
    """Keys are timed when the UI handles them: after a frame that took 1.5 s the next
    key is handled 1.5 s after the one before, though the scanner sent it 20 ms later.
    The frame's own time is taken off the gap (the virtual Pi lost code prefixes so)."""
    clock, events = Clock(), []
    frame = {"took": 0.016}
    wedge = KeyboardWedge(events.append, clock=clock, lag=lambda: frame["took"])
    typed(wedge, clock, "KIOSK-", 0.01)
    frame["took"] = 1.5  # the UI drew a slow frame; the rest arrives in the next one
    clock.advance(1.5)
    typed(wedge, clock, "1234", 0.0)
    frame["took"] = 0.016
    assert wedge.enter().payload == "KIOSK-1234"
    # a person who stops typing for 1.5 s on a UI running at full speed still starts over
    typed(wedge, clock, "xx", 0.01)
    clock.advance(1.5)
    typed(wedge, clock, "CODE-77", 0.01)
    assert wedge.enter().payload == "CODE-77"

