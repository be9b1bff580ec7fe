"""A USB barcode scanner in keyboard mode ("keyboard wedge") as a second input.

Such a scanner types the code very fast and presses Enter. A person typing is
slower, so a burst counts as a scan only when every keystroke, Enter included,
follows the previous one within ``max_gap`` seconds and the burst has at least
``min_length`` characters. The UI feeds it from its window's key events (on the
main thread); ``on_event`` is called synchronously from ``enter()``.

Keys are timed when the UI handles them, not when they were pressed. When the UI's
loop is late (a slow frame: a busy or emulated machine), keys pressed 50 ms apart are
handled a whole frame apart; ``lag`` (the UI: the time since its previous frame
began) is taken off each gap, so a slow frame never cuts a scan in two (found on the
virtual Pi, where a frame can take over a second).
"""

import time

from kiosk.hardware.scanner import ScanEvent


class KeyboardWedge:
    """Turns fast keystroke bursts ending in Enter into ``ScanEvent(source="keyboard")``."""

    def __init__(self, on_event, *, max_gap: float = 0.1, min_length: int = 4, clock=time.monotonic,
                 lag=None):
        self.on_event, self.max_gap, self.min_length = on_event, max_gap, min_length
        self._clock = clock
        self.lag = lag  # () -> seconds since the UI's previous frame began (None: keys handled at once)
        self._chars: list[str] = []
        self._first = self._last = 0.0
        self.count = 0

    @property
    def pending(self) -> str:
        """What the current burst has typed so far."""
        return "".join(self._chars)

    def feed(self, text: str) -> None:
        """Typed characters (one key or a chunk delivered at once)."""
        if not text:
            return
        now = self._clock()
        if self._chars and self._gap(now) > self.max_gap:
            self.reset()
        if not self._chars:
            self._first = now
        self._chars.append(text)
        self._last = now

    def enter(self) -> ScanEvent | None:
        """Return/Enter pressed: emits and returns the event if the burst was a scan."""
        now = self._clock()
        payload, fast = self.pending, bool(self._chars) and self._gap(now) <= self.max_gap
        self.reset()
        if not fast or len(payload) < self.min_length:
            return None
        event = ScanEvent(payload, "keyboard", self.count, (now - self._first) * 1000.0, "keyboard")
        self.count += 1
        self.on_event(event)
        return event

    def _gap(self, now: float) -> float:
        """Time since the previous key, less the time the UI's loop was not handling keys."""
        late = self.lag() if self.lag is not None else 0.0
        return now - self._last - max(0.0, late)

    def reset(self) -> None:
        """Forget a partial burst (e.g. when the screen changes)."""
        self._chars.clear()
