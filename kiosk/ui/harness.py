"""Driving the real app frame by frame, without ``App.run()``.

Used by the UI tests, ``kiosk screenshots`` and ``bench/ui.py`` (the approach of
kivy/tests/common.py's GraphicUnitTest): the app's root is put in the one Kivy
window, frames are advanced with ``EventLoop.idle()`` and touches are real
MotionEvents dispatched through the event loop. Call
:func:`kiosk.ui.kivyconf.configure_kivy` before importing this module.
"""

from kivy.base import EventLoop
from kivy.tests.common import UnitTestTouch

from kiosk.ui.app import KioskApp


class Harness:
    def __init__(self, controller, *, wedge=None):
        EventLoop.ensure_window()
        self.window = EventLoop.window
        self.controller = controller
        self.app = KioskApp(controller, wedge=wedge)
        self.root = self.app.build()
        self.window.add_widget(self.root)
        self.frames(2)

    def frames(self, count: int = 1) -> None:
        for _ in range(count):
            EventLoop.idle()

    def until(self, predicate, max_frames: int = 600) -> bool:
        """Advance frames until ``predicate()`` holds (False if it never did)."""
        for _ in range(max_frames):
            if predicate():
                return True
            EventLoop.idle()
        return bool(predicate())

    @property
    def screen(self):
        return self.app.sm.current_screen

    def widget(self, wid: str):
        return self.screen.ids[wid]

    def tap(self, widget, frames: int = 2) -> None:
        """A real touch (down, up) at the centre of ``widget``."""
        x, y = widget.to_window(*widget.center)
        touch = UnitTestTouch(x, y)
        touch.touch_down()
        self.frames(1)
        touch.touch_up()
        self.frames(frames)

    def tap_id(self, wid: str, frames: int = 2) -> None:
        self.tap(self.widget(wid), frames)

    def screenshot(self, path) -> None:
        self.frames(2)
        self.root.export_to_png(str(path))

    def close(self) -> None:
        """Unmount; ``on_stop`` also makes kv's ``app`` forget this app (its ProxyApp
        caches the running app until it stops) and closes the controller's workers."""
        self.app.unbuild()
        self.window.remove_widget(self.root)
        self.app.dispatch("on_stop")
        from kivy.app import App

        App._running_app = None
