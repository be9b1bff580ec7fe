"""The scanning pipeline: replays through the scanner threads, repeats, dropped frames, dead cameras."""

import threading
import time

import numpy as np
import pytest

from kiosk.errors import HardwareError
from kiosk.hardware.camera import open_source
from kiosk.hardware.camera import synthetic as syn
from kiosk.hardware.camera.base import FrameSource
from kiosk.hardware.camera.replay import ReplaySource
from kiosk.hardware.decoder import Decoded, make_decoder
from kiosk.hardware.scanner import RepeatFilter, ScanEvent, Scanner

A, B, C = "KIOSK-AAAA-1111", "KIOSK-BBBB-2222", "https://shop.example/r?code=CCCC-3333"


@pytest.fixture(scope="module")
def cards():
    return {A: syn.wallet_card(A), B: syn.wallet_card(B, dark=True), C: syn.perspective(syn.wallet_card(C), 0.2)}


@pytest.fixture(scope="module")
def decoder():
    return make_decoder("auto")


def scan(folder, decoder, spec_query="?fps=0", **kwargs):
    events = []
    source = open_source(f"replay:{folder}{spec_query}", once=True)
    stats = Scanner(source, decoder, events.append, **kwargs).run()
    return events, stats


def test_sixty_frames_of_one_code_are_one_event(tmp_path, cards, decoder):
    syn.write_frames(tmp_path, [cards[A]] * 60)
    events, stats = scan(tmp_path, decoder)
    assert [(e.payload, e.frame_index, e.source) for e in events] == [(A, 0, "camera")]
    assert stats.frames_read == 60 and stats.frames_decoded == 60 and stats.frames_dropped == 0
    assert events[0].decoder == "zxing" and events[0].latency_ms >= 0


def test_sixty_frames_at_camera_pace_are_one_event_even_when_frames_drop(tmp_path, cards, decoder):
    syn.write_frames(tmp_path, [cards[B]] * 60)
    events, stats = scan(tmp_path, decoder, "?fps=30")
    assert [e.payload for e in events] == [B]
    assert stats.frames_read == 60
    assert stats.frames_decoded + stats.frames_dropped == 60


def test_alternating_codes_are_one_event_each(tmp_path, cards, decoder):
    syn.write_frames(tmp_path, [cards[A], cards[B]] * 30)
    events, _ = scan(tmp_path, decoder)
    assert [(e.payload, e.frame_index) for e in events] == [(A, 0), (B, 1)]


def test_codes_shown_one_after_another_are_one_event_each(tmp_path, cards, decoder):
    frames = [cards[A]] * 10 + [syn.blank()] * 3 + [cards[B]] * 10 + [cards[C]] * 10
    syn.write_frames(tmp_path, frames)
    events, _ = scan(tmp_path, decoder)
    assert [(e.payload, e.frame_index) for e in events] == [(A, 0), (B, 13), (C, 23)]


def test_frames_without_codes_yield_no_event(tmp_path, decoder):
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (240, 320), dtype=np.uint8) for _ in range(10)]
    frames += [syn.blank((320, 240), seed=i) for i in range(10)]
    syn.write_frames(tmp_path, frames)
    events, stats = scan(tmp_path, decoder)
    assert events == [] and stats.frames_decoded == 20


def test_repeat_window_slides_with_each_sighting():
    repeats = RepeatFilter(3.0)
    assert repeats.admit(A, 0.0)
    assert not repeats.admit(A, 2.9)
    assert not repeats.admit(A, 5.8)  # held under the camera: still the same presentation
    assert repeats.admit(B, 5.9)  # a different code: new event at once
    assert not repeats.admit(A, 6.0)
    assert repeats.admit(A, 9.1)  # away for more than the window: presented again
    assert RepeatFilter(0.0).admit(A, 1.0) and RepeatFilter(0.0).admit(A, 1.0)


class TimedSource(FrameSource):
    """Frames with chosen capture times (seconds), to test the window through the scanner."""

    realtime = False

    def __init__(self, images, times):
        super().__init__("timed")
        self.items = list(zip(images, times, strict=True))

    def read(self, timeout=None):
        from kiosk.hardware.camera.base import Frame

        if not self.items:
            return None
        gray, at = self.items.pop(0)
        self._index += 1
        return Frame(gray, self._index - 1, at)


def test_scanner_uses_capture_times_for_the_repeat_window(cards, decoder):
    images = [cards[A], cards[A], cards[A], cards[A]]
    events = []
    Scanner(TimedSource(images, [0.0, 1.0, 4.5, 4.6]), decoder, events.append, repeat_window=3.0).run()
    assert [e.frame_index for e in events] == [0, 2]


class EndSignallingReplay(ReplaySource):
    """A replay that says when it has delivered everything (``ended``), and gives its
    second frame only once the decoder is busy with the first (``busy``): on a loaded
    machine the decoder thread may otherwise start after every frame was read, and the
    first frame it sees is the last."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ended, self.busy = threading.Event(), threading.Event()
        self.reads = 0

    def read(self, timeout=None):
        if self.reads == 1 and not self.busy.wait(30):
            raise RuntimeError("the decoder never took the first frame")
        self.reads += 1
        frame = super().read(timeout)
        if frame is None:
            self.ended.set()
        return frame


def test_newest_frame_wins_stale_frames_are_dropped_not_queued(tmp_path, cards, decoder):
    syn.write_frames(tmp_path, [cards[A]] * 10 + [cards[B]] * 10)
    source = EndSignallingReplay(tmp_path, fps=0, loop=False)
    seen = []

    class SlowFirstDecode:
        name = "slow"

        def decode(self, gray):
            if not seen:  # the first decode lasts until the camera has delivered everything
                source.busy.set()
                assert source.ended.wait(30), "reader thread did not finish"
            seen.append(gray)
            return decoder.decode(gray)

    events = []
    scanner = Scanner(source, SlowFirstDecode(), events.append, drop_frames=True)
    stats = scanner.run()
    assert stats.frames_read == 20
    assert len(stats.decoded_indices) == 2 and stats.decoded_indices[-1] == 19
    assert stats.frames_dropped == 18
    assert [e.payload for e in events] == [A, B] and events[1].frame_index == 19


def test_without_dropping_every_frame_is_decoded_in_order(tmp_path, cards, decoder):
    syn.write_frames(tmp_path, [cards[A]] * 5)
    events, stats = scan(tmp_path, decoder, drop_frames=False)
    assert stats.decoded_indices == [0, 1, 2, 3, 4]


def test_events_arrive_on_the_scanner_thread_not_the_caller(tmp_path, cards, decoder):
    syn.write_frames(tmp_path, [cards[C]] * 3)
    threads = []
    source = open_source(f"replay:{tmp_path}?fps=0", once=True)
    Scanner(source, decoder, lambda e: threads.append(threading.current_thread())).run()
    assert threads and threads[0] is not threading.main_thread()


class DyingCamera(FrameSource):
    """Gives ``good`` frames, then fails like an unplugged camera."""

    def __init__(self, frame, good=3, error=None):
        super().__init__("test-cam")
        self.frame, self.good = frame, good
        self.error = error or OSError("VIDIOC_DQBUF: No such device")

    def _grab(self, timeout):
        if self.good <= 0:
            raise self.error
        self.good -= 1
        return self.frame


def test_a_dead_camera_reaches_on_error_and_stops_the_scanner(cards, decoder):
    errors, events = [], []
    scanner = Scanner(DyingCamera(cards[A]), decoder, events.append, on_error=errors.append)
    scanner.start()
    assert scanner.wait(30)
    scanner.stop()
    assert not scanner.running
    assert [e.payload for e in events] == [A]
    assert len(errors) == 1 and isinstance(errors[0], HardwareError)
    assert "camera test-cam failed" in str(errors[0]) and "No such device" in str(errors[0])


def test_run_raises_the_camera_error_when_nobody_handles_it(cards, decoder):
    scanner = Scanner(DyingCamera(cards[A], good=0, error=HardwareError("picamera2: no frame within 3 s")),
                      decoder, lambda e: None)
    with pytest.raises(HardwareError, match="no frame within"):
        scanner.run()


def test_a_camera_that_cannot_open_reaches_on_error(decoder):
    errors = []
    source = open_source("replay:/nonexistent/recording")
    scanner = Scanner(source, decoder, lambda e: None, on_error=errors.append).start()
    assert scanner.wait(5) and "does not exist" in str(errors[0])


def test_a_failing_decoder_or_handler_does_not_stop_scanning(tmp_path, cards, decoder):
    syn.write_frames(tmp_path, [cards[A], cards[B], cards[C]])

    class Flaky:
        name = "flaky"
        calls = 0

        def decode(self, gray):
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("boom")
            return decoder.decode(gray)

    def handler(event):
        events.append(event)
        if len(events) == 1:
            raise ValueError("UI bug")

    events = []
    source = open_source(f"replay:{tmp_path}?fps=0", once=True)
    Scanner(source, Flaky(), handler).run()
    assert [e.payload for e in events] == [B, C]


def test_no_camera_is_not_available_and_scans_nothing(decoder):
    source = open_source("none")
    assert source.available is False and source.read() is None
    events = []
    stats = Scanner(source, decoder, events.append).run()
    assert events == [] and stats.frames_read == 0


def test_run_until_first_event_stops_a_looping_replay(tmp_path, cards, decoder):
    syn.write_frames(tmp_path, [syn.blank((320, 240))] * 2 + [cards[A]])
    source = open_source(f"replay:{tmp_path}?fps=200")  # loops forever
    events = []
    Scanner(source, decoder, events.append).run(until_end=False)
    assert [e.payload for e in events] == [A]
    assert source.read() is None  # stopped


def test_scan_event_json():
    event = ScanEvent("X", "zxing", 4, 1.5)
    assert event.to_json() == {"payload": "X", "decoder": "zxing", "frame_index": 4,
                               "latency_ms": 1.5, "source": "camera"}
    assert Decoded("X", "zxing").text == "X"


def test_two_codes_in_view_together_are_one_event_each(tmp_path, cards, decoder):
    both = np.hstack([cards[A], syn.wallet_card(C)])
    syn.write_frames(tmp_path, [both] * 10)
    events, _ = scan(tmp_path, decoder)
    assert sorted(e.payload for e in events) == sorted([A, C])
    assert {e.frame_index for e in events} == {0}


def test_fallbacks_are_skipped_for_a_frame_that_a_newer_one_replaced(tmp_path, cards):
    from kiosk.hardware.decoder import ChainDecoder

    syn.write_frames(tmp_path, [syn.blank((320, 240))] * 6 + [cards[A]])
    source = EndSignallingReplay(tmp_path, fps=0, loop=False)
    first_pass, fallback = [], []

    class FirstPass:
        name = "first"

        def decode(self, gray):
            if not first_pass:  # a slow first frame: every other frame arrives meanwhile
                source.busy.set()
                assert source.ended.wait(30)
            first_pass.append(gray)
            return make_decoder("zxing").decode(gray)

    class Fallback:
        name = "fallback"

        def decode(self, gray):
            fallback.append(gray)
            return []

    events = []
    Scanner(source, ChainDecoder([FirstPass(), Fallback()]), events.append, drop_frames=True).run()
    assert len(first_pass) == 2 and len(fallback) == 0  # stale first frame: no fallback
    assert [e.payload for e in events] == [A]
    chain = ChainDecoder([FirstPass(), Fallback()])
    first_pass.append(None)
    assert chain.decode(syn.blank((320, 240))) == [] and len(fallback) == 1  # no stop: full chain


# --- a camera that fails and comes back ----------------------------------------------------

class UnpluggedCamera(FrameSource):
    """A camera that gives ``before`` frames of one card, is unplugged (reads fail, then
    opening fails ``refusals`` times), and is plugged back with another card."""

    reopenable = True

    def __init__(self, before, after, *, good=3, refusals=2):
        super().__init__("test-cam")
        self.before, self.after, self.good, self.refusals = before, after, good, refusals
        self.opens = self.closes = 0
        self.back = threading.Event()

    def _open(self):
        self.opens += 1
        if self.opens > 1 and self.refusals > 0:
            self.refusals -= 1
            raise HardwareError("test-cam: no camera found")

    def _grab(self, timeout):
        if self.opens == 1:
            if self.good <= 0:
                raise OSError("VIDIOC_DQBUF: No such device")
            self.good -= 1
            return self.before
        self.back.set()
        return self.after

    def _close(self):
        self.closes += 1


def test_an_unplugged_camera_is_reopened_with_backoff_and_scanning_resumes(cards, decoder):
    camera = UnpluggedCamera(cards[A], cards[B], refusals=2)
    events, errors, recovered = [], [], []
    scanner = Scanner(camera, decoder, events.append, on_error=errors.append,
                      on_recover=lambda: recovered.append(True), reopen_delays=(0.01, 0.02))
    scanner.start()
    try:
        assert camera.back.wait(30), "the camera was not reopened"
        for _ in range(300):  # bounded: 3 s
            if events[-1:] and events[-1].payload == B:
                break
            time.sleep(0.01)
        assert scanner.alive()
    finally:
        scanner.stop()
    assert [e.payload for e in events] == [A, B]
    assert len(errors) == 1 and "No such device" in str(errors[0])  # one report per outage
    assert recovered == [True] and scanner.reopens == 1 and scanner.error is None
    assert camera.opens == 4  # the first open, two refused, the one that worked
    assert camera.closes == 2  # closed after the failed read, and at stop
    assert not scanner.alive()


def test_a_camera_missing_at_start_is_opened_when_it_appears(cards, decoder):
    class LatePlug(UnpluggedCamera):
        def _open(self):
            self.opens += 1
            if self.opens <= 2:
                raise HardwareError("test-cam: no camera found")

    camera = LatePlug(cards[A], cards[B])
    events, errors = [], []
    scanner = Scanner(camera, decoder, events.append, on_error=errors.append, reopen_delays=(0.01,))
    scanner.start()
    try:
        assert camera.back.wait(30)
        for _ in range(300):  # bounded: 3 s
            if events:
                break
            time.sleep(0.01)
    finally:
        scanner.stop()
    assert [e.payload for e in events] == [B] and camera.opens == 3
    assert len(errors) == 1 and "no camera found" in str(errors[0])


def test_the_delays_between_reopens_back_off_and_stay_bounded():
    waits = []

    class Never(FrameSource):
        reopenable = True

        def _grab(self, timeout):
            raise OSError("gone")

    scanner = Scanner(Never("gone-cam"), make_decoder("zxing"), lambda e: None,
                      on_error=lambda e: None, reopen_delays=(0.001, 0.002, 0.004))
    real_wait = scanner._stopping.wait

    def wait(delay):
        waits.append(delay)
        if len(waits) >= 6:
            scanner._stopping.set()
        return real_wait(0)

    scanner._stopping.wait = wait
    scanner.start()
    assert scanner.wait(10)
    scanner.stop()
    assert waits[:6] == [0.001, 0.002, 0.004, 0.004, 0.004, 0.004]


def test_a_hung_or_finished_scanner_is_not_alive(cards, decoder, monkeypatch):
    scanner = Scanner(DyingCamera(cards[A], good=10**6), decoder, lambda e: None, frame_timeout=0.1,
                      reopen_delays=(0.1,))
    assert not scanner.alive()  # not started
    scanner.start()
    try:
        assert scanner.alive()
        scanner._progress_at -= 60  # the reader has been stuck inside the driver for a minute
        assert not scanner.alive()
    finally:
        scanner.stop()
    assert not scanner.alive()


def test_the_full_resolution_frame_reaches_the_decoder(cards):
    from kiosk.hardware.enhance import half_size

    full = np.kron(cards[A], np.ones((2, 2), np.uint8))  # the same view at twice the size

    class TwoStreams(FrameSource):
        realtime = False

        def __init__(self):
            super().__init__("two-streams")
            self.left = 3

        def _grab(self, timeout):
            self.left -= 1
            return (half_size(full), full) if self.left >= 0 else None

    seen = []

    class Recorder:
        name, accepts_full = "recorder", True

        def decode(self, gray, full=None):
            seen.append((gray.shape, None if full is None else full.shape))
            return []

    Scanner(TwoStreams(), Recorder(), lambda e: None).run()
    assert seen == [((480, 640), (960, 1280))] * 3


def test_without_an_error_handler_a_failed_camera_ends_the_scan(cards, decoder):
    camera = UnpluggedCamera(cards[A], cards[B], refusals=0)  # would come back at once
    events = []
    with pytest.raises(HardwareError, match="No such device"):
        Scanner(camera, decoder, events.append, reopen_delays=(0.01,)).run()  # kiosk scan
    assert [e.payload for e in events] == [A] and camera.opens == 1


def test_the_camera_section_sets_the_plan_budget_and_checks_its_choices():
    from pathlib import Path
    from types import SimpleNamespace

    from kiosk.config import Section
    from kiosk.errors import ConfigError
    from kiosk.hardware.scanner import from_config

    def cfg(**values):
        return SimpleNamespace(section=lambda name: Section(Path("kiosk.toml"), name, values))

    scanner = from_config(cfg(source="none", budget_ms=20, idle_budget_ms=4), lambda e: None)
    assert (scanner.decoder.name, scanner.decoder.budget_ms, scanner.decoder.idle_budget_ms) == ("auto", 20.0, 4.0)
    assert from_config(cfg(source="none", decoder="zxing", budget_ms=20), lambda e: None).decoder.name == "zxing"
    with pytest.raises(ConfigError, match=r"\[camera\] af_range: must be one of normal, macro, full"):
        from_config(cfg(source="none", af_range="near"), lambda e: None)
    with pytest.raises(ConfigError, match=r"\[camera\] budget_ms: must be greater than 0"):
        from_config(cfg(source="none", budget_ms=0), lambda e: None)
