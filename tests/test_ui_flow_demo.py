"""`kiosk demo` deals one card per customer: after the previous one is done and Idle
was left alone for a while, or at once on Space; never on a timer of its own."""

import os
import time

import pytest

if not os.environ.get("DISPLAY"):
    pytest.skip("needs an X display: run under xvfb-run (make test does)", allow_module_level=True)

from test_ui_screens import kiosk, on, window  # noqa: E402,F401 - the real-window fixtures

from kiosk.ui import controller as c  # noqa: E402
from kiosk.ui import demo  # noqa: E402


def run_for(h, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        h.frames(1)


def test_demo_cards_come_per_customer_or_on_space(kiosk, window):  # noqa: F811
    h, parts, built = kiosk()  # no camera; the deck becomes it
    cards = built.data_dir / "deck"
    demo.draw_cards(demo.spec(), cards)  # the demo's eight cards, ready-coffee first
    hooks, stop_hooks = [], []
    dealer = demo.attach_deck(parts, cards, hooks, stop_hooks, pause=2.0, first=60)
    try:
        parts.start(h.app.deliver_scan)
        for hook in hooks:
            hook(h.app)
        assert on(h, c.IDLE)
        run_for(h, 2.5)
        assert h.app.sm.current == c.IDLE and dealer.deck.dealt == 0  # time to look around
        window.dispatch("on_key_down", 32, 65, " ", [])  # Space: the next card now
        assert on(h, c.VERDICT)
        assert dealer.deck.dealt == 1
        assert h.until(lambda: h.screen.ids.title.text == "Free coffee")
        run_for(h, 3)  # a customer on screen: no new card however long it takes
        assert dealer.deck.dealt == 1 and h.app.sm.current == c.VERDICT
        h.tap_id("cancel")
        assert on(h, c.IDLE)
        run_for(h, 1.2)
        h.tap(h.widget("languages").button("uz"))  # someone explores Idle: the wait starts again
        run_for(h, 1.2)
        assert dealer.deck.dealt == 1
        assert h.until(lambda: dealer.deck.dealt == 2, max_frames=2000)
        assert on(h, c.VERDICT)
        assert h.until(lambda: h.screen.ids.reason.text != "")
    finally:
        for hook in stop_hooks:
            hook(h.app)
