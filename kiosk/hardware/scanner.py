"""The scanning pipeline: frames in, one event per presented code out.

Two background threads, never the UI thread: a *reader* takes frames from the
source and puts each in a one-frame slot, replacing a frame the decoder has not
taken yet (newest frame wins: stale frames are dropped, never queued behind a slow
decode); a *decoder* takes the newest frame, decodes it and reports new payloads. When a
newer frame is already waiting, the decoder chain's slower fallback stages are
skipped for the stale one.
``on_event`` is called from the decoder thread, so a Kivy UI must hop to its main
thread with ``Clock.schedule_once``.

Repeats: a payload seen again within ``repeat_window`` seconds of its last sighting
is the same presentation (one event however long the code is held); a payload not
seen within the window is a new event at once.
"""

import logging
import threading
import time
from dataclasses import asdict, dataclass, field

from kiosk.errors import HardwareError, KioskError
from kiosk.hardware.camera.base import Frame, FrameSource
from kiosk.i18n import Msg

log = logging.getLogger(__name__)
DEFAULT_REPEAT_WINDOW = 3.0
# Seconds between attempts to reopen a failed camera: backing off, never longer than the last.
REOPEN_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class ScanEvent:
    """A newly presented code.

    ``latency_ms`` runs from frame capture (or, for a keyboard wedge, the first
    typed character) to the event; ``source`` is ``camera`` or ``keyboard``.
    """

    payload: str
    decoder: str
    frame_index: int
    latency_ms: float
    source: str = "camera"

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class ScanStats:
    """Counters of one scanner run: how many frames were read, decoded and dropped.

    ``decoded_indices`` holds the indices of the most recently decoded frames (at
    least the last ``KEEP_INDICES``): enough to see which frames were skipped, without
    growing for as long as the kiosk runs.
    """

    KEEP_INDICES = 1000

    frames_read: int = 0
    frames_decoded: int = 0
    frames_dropped: int = 0
    events: int = 0
    decoded_indices: list = field(default_factory=list, repr=False)

    def count_decoded(self, index: int) -> None:
        """Record that frame ``index`` was decoded."""
        self.frames_decoded += 1
        self.decoded_indices.append(index)
        if len(self.decoded_indices) > 2 * self.KEEP_INDICES:  # trim now and then: O(1) a frame
            del self.decoded_indices[:-self.KEEP_INDICES]


class RepeatFilter:
    """Decides which payloads are new presentations (see module docstring)."""

    def __init__(self, window: float = DEFAULT_REPEAT_WINDOW):
        if window < 0:
            raise ValueError("repeat window must not be negative")
        self.window = window
        self._last_seen: dict[str, float] = {}

    def admit(self, payload: str, at: float) -> bool:
        """True when ``payload`` seen at time ``at`` is a new event; records the sighting."""
        last = self._last_seen.get(payload)
        self._last_seen[payload] = at
        self._forget_before(at - self.window)
        return last is None or at - last > self.window

    def _forget_before(self, cutoff: float):
        if len(self._last_seen) > 16:
            self._last_seen = {p: t for p, t in self._last_seen.items() if t >= cutoff}


class FrameSlot:
    """A one-frame mailbox between reader and decoder.

    With ``drop=True`` a put replaces an untaken frame (counted as dropped); with
    ``drop=False`` (offline replays) a put waits until the decoder took the last one.
    """

    def __init__(self, drop: bool = True):
        self.drop = drop
        self._frame: Frame | None = None
        self._closed = False
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            while not self.drop and self._frame is not None and not self._closed:
                self._cond.wait()
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._cond.notify_all()

    def take(self) -> Frame | None:
        """The newest frame; blocks; None once closed and empty."""
        with self._cond:
            while self._frame is None and not self._closed:
                self._cond.wait()
            frame, self._frame = self._frame, None
            self._cond.notify_all()
            return frame

    def has_frame(self) -> bool:
        """True when a frame newer than the one being decoded is waiting."""
        return self._frame is not None

    def close(self, discard: bool = False) -> None:
        with self._cond:
            self._closed = True
            if discard:
                self._frame = None
            self._cond.notify_all()


class Scanner:
    """Runs ``source`` through ``decoder`` in the background and reports new codes.

    ``on_error(exc)`` receives a :class:`HardwareError` when the camera dies (raises,
    or gives no frame within ``frame_timeout``) or cannot be opened. A camera that
    may come back (``source.reopenable``: picamera2, a webcam), when there is an
    ``on_error`` handler (``reopen`` overrides), is then closed and opened again after
    ``reopen_delays`` seconds (backing off, never longer than the last delay) until it
    works or the scanner is stopped; ``on_recover()`` is called when frames flow
    again. Any other failure stops the scanner; the process never stops. ``drop_frames`` defaults to the
    source's ``realtime`` flag: cameras and paced replays drop stale frames, an
    unpaced replay (``fps=0``) decodes every frame.
    """

    def __init__(self, source: FrameSource, decoder, on_event, *,
                 repeat_window: float = DEFAULT_REPEAT_WINDOW, on_error=None,
                 drop_frames: bool | None = None, frame_timeout: float | None = None,
                 reopen: bool | None = None, reopen_delays=REOPEN_DELAYS, on_recover=None):
        self.source, self.decoder = source, decoder
        self.on_event, self.on_error, self.on_recover = on_event, on_error, on_recover
        # Without on_error (the CLI) a failure ends the scan and run() raises it.
        self.reopen = (getattr(source, "reopenable", False) and on_error is not None
                       if reopen is None else reopen)
        self.reopen_delays = tuple(reopen_delays) or (1.0,)
        self.reopens = 0  # successful reopens after a failure
        self._progress_at = time.monotonic()
        self.repeats = RepeatFilter(repeat_window)
        self.drop_frames = source.realtime if drop_frames is None else drop_frames
        self.frame_timeout = frame_timeout
        self.stats = ScanStats()
        self.error: BaseException | None = None
        self._slot = FrameSlot(self.drop_frames)
        self._threads: list[threading.Thread] = []
        self._finished = threading.Event()
        self._stopping = threading.Event()

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def alive(self) -> bool:
        """True while scanning works or is being restored: both threads run and the
        reader made progress (a frame, or an attempt to reopen the camera) recently.
        False once the scanner stopped for good or its reader hangs inside the camera
        driver; the UI's watchdog ping depends on it (docs/scanning.md)."""
        if len(self._threads) < 2 or not all(t.is_alive() for t in self._threads):
            return False
        limit = (self.frame_timeout or 3.0) * 2 + max(self.reopen_delays) + 5.0
        return time.monotonic() - self._progress_at < limit

    def start(self) -> "Scanner":
        """Open the source and start the reader and decoder threads (returns at once)."""
        if self._threads:
            return self
        if not self.source.available:
            self._finished.set()
            return self
        try:
            self.source.start()
        except Exception as exc:
            self._fail(exc)
            if not self.reopen:
                self._finished.set()
                return self
            self._outage = True  # not plugged in yet: the reader keeps trying to open it
        self._progress_at = time.monotonic()
        self._threads = [threading.Thread(target=self._read_loop, name="scanner-reader", daemon=True),
                         threading.Thread(target=self._decode_loop, name="scanner-decoder", daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop both threads and release the camera."""
        self._stopping.set()
        self._slot.close(discard=True)
        self.source.stop()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the source ended (or failed) and its last frame was decoded."""
        return self._finished.wait(timeout)

    def run(self, until_end: bool = True) -> ScanStats:
        """Scan in the background and block (for the CLI); Ctrl-C stops cleanly.

        Returns when the source ends (a replay played once) or fails, or when
        ``stop()`` is called; with ``until_end=False`` also after the first event.
        Raises the camera's error when no ``on_error`` handler was given.
        """
        first = threading.Event()
        if not until_end:
            report = self.on_event
            self.on_event = lambda event: (report(event), first.set())
        self.start()
        try:
            while not self._finished.wait(0.1) and not self._stopping.is_set() and not first.is_set():
                pass
        finally:
            self.stop()
        if self.error is not None and self.on_error is None:
            raise self.error
        return self.stats

    _outage = False  # the camera failed and is being reopened

    def _read_loop(self):
        attempts = 0
        try:
            while not self._stopping.is_set():
                try:
                    frame = self.source.read(timeout=self.frame_timeout)
                except Exception as exc:  # a dead camera must not take the process down
                    if self._stopping.is_set() or not self.reopen:
                        raise
                    if not self._outage:
                        self._outage = True
                        self._fail(exc)
                    else:
                        log.info("camera %s still failing: %s", self.source.name, exc)
                    self.source.reset()
                    self._progress_at = time.monotonic()
                    self._stopping.wait(self.reopen_delays[min(attempts, len(self.reopen_delays) - 1)])
                    attempts += 1
                    continue
                if frame is None:
                    break
                self._progress_at = time.monotonic()
                if self._outage:
                    self._recovered()
                attempts = 0
                self.stats.frames_read += 1
                self._slot.put(frame)
                self.stats.frames_dropped = self._slot.dropped
        except Exception as exc:
            if not self._stopping.is_set():
                self._fail(exc)
        finally:
            self._slot.close()

    def _recovered(self):
        self._outage = False
        self.reopens += 1
        self.error = None
        log.warning("camera %s works again", self.source.name)
        if self.on_recover is not None:
            try:
                self.on_recover()
            except Exception:
                log.exception("on_recover handler failed")

    def _decode_loop(self):
        try:
            while True:
                frame = self._slot.take()
                if frame is None:
                    break
                self._process(frame)
        finally:
            self.stats.frames_dropped = self._slot.dropped
            self._finished.set()

    def _process(self, frame: Frame):
        stop = self._slot.has_frame if self.drop_frames else None
        try:
            found = decode_frame(self.decoder, frame, stop)
        except Exception:
            log.exception("decoder %r failed on frame %d", self.decoder, frame.index)
            return
        self.stats.count_decoded(frame.index)
        for item in found:
            if self._stopping.is_set():  # stop() from an event handler: report no more
                return
            if self.repeats.admit(item.text, frame.captured_at):
                self._emit(ScanEvent(item.text, item.decoder, frame.index,
                                     (time.monotonic() - frame.captured_at) * 1000.0))

    def _emit(self, event: ScanEvent):
        self.stats.events += 1
        try:
            self.on_event(event)
        except Exception:
            log.exception("on_event handler failed for %r", event)

    def _fail(self, exc: BaseException):
        if not isinstance(exc, KioskError):
            exc = HardwareError(Msg("camera {camera} failed: {kind}: {error}", camera=self.source.name,
                                    kind=type(exc).__name__, error=exc))
        self.error = exc
        if self.on_error is not None:  # else run() raises it to the caller
            log.error("%s", exc)
            try:
                self.on_error(exc)
            except Exception:
                log.exception("on_error handler failed")


def decode_frame(decoder, frame: Frame, stop=None) -> list:
    """``decoder`` on ``frame``: with its full-resolution view and ``stop`` (a newer
    frame is waiting) when the decoder takes them (the auto plan does)."""
    options = {}
    if stop is not None and getattr(decoder, "accepts_stop", False):
        options["stop"] = stop
    if frame.full is not None and getattr(decoder, "accepts_full", False):
        options["full"] = frame.full
    return decoder.decode(frame.gray, **options)


def decoder_from_settings(name: str, settings: dict):
    """The decoder called ``name``; ``auto`` gets the ``[camera]`` budgets from ``settings``."""
    from kiosk.hardware.decoder import make_decoder

    budget = {"budget_ms": settings["budget_ms"], "idle_budget_ms": settings["idle_budget_ms"]}
    return make_decoder(name, **(budget if name.strip().lower() == "auto" else {}))


def from_config(cfg, on_event, *, on_error=None, on_recover=None, camera: str | None = None,
                decoder: str | None = None, once: bool = False, **source_options) -> Scanner:
    """A Scanner built from the ``[camera]`` section of ``cfg`` (source, decoder,
    repeat_window and the camera settings); ``camera``/``decoder`` override it."""
    from kiosk.hardware.camera import open_source, settings_from_section

    section = cfg.section("camera")
    spec = camera or section.get("source", str, "none")
    window = section.get("repeat_window", (int, float), DEFAULT_REPEAT_WINDOW)
    if window < 0:
        raise section.error("repeat_window", Msg("must not be negative"))
    settings = settings_from_section(section)
    source = open_source(spec, settings, once=once, **source_options)
    name = decoder or section.get("decoder", str, "auto")
    return Scanner(source, decoder_from_settings(name, settings),
                   on_event, repeat_window=float(window), on_error=on_error, on_recover=on_recover,
                   frame_timeout=settings["frame_timeout"])
