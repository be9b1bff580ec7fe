"""The Kivy application: the screen manager, the clock loop, keyboard and touches.

Importing this module opens Kivy's window machinery: call
:func:`kiosk.ui.kivyconf.configure_kivy` first. :class:`KioskApp` shows the
controller's state; hardware threads reach it only through ``kivyconf.post``.
"""

import logging
import time
from pathlib import Path

from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.lang import Builder
from kivy.properties import BooleanProperty, NumericProperty, StringProperty
from kivy.uix.screenmanager import NoTransition, ScreenManager

from kiosk import watchdog
from kiosk.ui import screens
from kiosk.ui.i18n import LANGUAGE_NAMES, tr
from kiosk.ui.kivyconf import post

HERE = Path(__file__).resolve().parent
log = logging.getLogger(__name__)


class KioskApp(App):
    """The kiosk UI. ``app.lang``, ``app.u`` (1% of the short side) and ``app.portrait``
    are what the .kv files bind to, so text and layout follow language and screen size."""

    lang = StringProperty("en")
    language_name = StringProperty("English")
    u = NumericProperty(4.8)
    portrait = BooleanProperty(False)
    business_name = StringProperty("")
    camera_position = StringProperty("top")
    title = "redeem-kiosk"

    def __init__(self, controller, *, on_start_hooks: list | None = None,
                 on_stop_hooks: list | None = None, wedge=None, alive=None, **kwargs):
        super().__init__(**kwargs)
        self.controller = controller
        self.alive = alive  # () -> bool: the watchdog is pinged only while it is True
        self.business_name = controller.settings.business_name
        self.camera_position = controller.settings.camera_position
        self.on_start_hooks = on_start_hooks or []
        self.on_stop_hooks = on_stop_hooks or []
        self.wedge = wedge
        if wedge is not None and wedge.lag is None:  # keys handled a slow frame apart are one burst
            # the window reads keys after each frame's tick and draw: a key is at most
            # (this frame so far + the previous frame) later than a key of the frame before
            wedge.lag = lambda: Clock.time() - Clock.get_time() + Clock.frametime
        self.sm = None
        self._events = []
        self._ready_sent = False
        self.scan_posted_at: float | None = None
        self.last_verdict_latency_ms: float | None = None
        self.watchdog = watchdog  # systemd notify (does nothing outside systemd)

    # -- building -------------------------------------------------------------
    def tr(self, text: str) -> str:
        return tr(text, self.lang)

    def build(self):
        if str(HERE / "widgets.kv") not in Builder.files:
            Builder.load_file(str(HERE / "widgets.kv"))
        self.sm = ScreenManager(transition=NoTransition())
        for name in screens.KEPT:
            self.sm.add_widget(screens.create(name, self.controller))
        self.controller.listeners.append(self._on_change)
        Window.bind(size=self._resize, on_touch_down=self._on_touch, on_key_down=self._on_key,
                    on_textinput=self._on_text)
        self._resize(Window, Window.size)
        self._events = [Clock.schedule_interval(lambda _dt: self.controller.tick(), 0.2)]
        if self.watchdog is not None:
            self._events.append(Clock.schedule_interval(lambda _dt: self.ping_watchdog(), 5))
        self._on_change(self.controller)
        self.controller.refresh_status() if self.controller.provisioned else None
        return self.sm

    def unbuild(self) -> None:
        """Undo :meth:`build` (tests mount several apps in one window, one at a time)."""
        for event in self._events:
            event.cancel()
        Window.unbind(size=self._resize, on_touch_down=self._on_touch, on_key_down=self._on_key,
                      on_textinput=self._on_text)
        if self._on_change in self.controller.listeners:
            self.controller.listeners.remove(self._on_change)
        for screen in self.sm.screens:
            hint = screen.ids.get("hint")
            if hint is not None:
                hint.stop()

    def on_start(self):
        for hook in self.on_start_hooks:
            hook(self)
        Window.bind(on_flip=self._notify_ready)

    def on_stop(self):
        for hook in self.on_stop_hooks:
            try:
                hook(self)
            except Exception as exc:
                log.warning("stop hook failed: %s", exc)
        self.controller.close()

    def ping_watchdog(self) -> bool:
        """The systemd keep-alive from the UI's clock, only while ``alive()`` holds (the
        camera's scanner runs or is reopening the camera): a kiosk whose scanner died or
        hangs is restarted by systemd instead of showing a dead camera for ever."""
        if self.alive is not None and not self.alive():
            log.error("watchdog: not pinging, the camera's scanner is not alive")
            return False
        return self.watchdog.ping()

    def _notify_ready(self, *_args) -> None:
        """systemd READY=1 once the first screen (idle or not provisioned) is drawn."""
        Window.unbind(on_flip=self._notify_ready)
        if not self._ready_sent and self.watchdog is not None:
            self._ready_sent = True
            self.watchdog.notify_ready(f"screen {self.controller.screen}")

    # -- events -----------------------------------------------------------------
    def _resize(self, _window, size) -> None:
        w, h = size
        self.u = min(w, h) / 100.0
        self.portrait = h > w

    def _on_touch(self, _window, _touch):
        self.controller.activity()

    def _on_text(self, _window, text):
        if self.wedge is not None:
            self.wedge.feed(text)

    def _on_key(self, _window, key, *_args):
        if self.wedge is not None and key == 13:
            self.wedge.enter()

    def deliver_scan(self, payload: str, source: str = "camera") -> None:
        """A scan from any thread: hop to the main thread, then into the controller.

        ``last_verdict_latency_ms`` then measures from this call to the first buffer
        flip that shows the verdict (the figure bench/ui.py reports)."""
        posted = time.perf_counter()

        def run():
            self.scan_posted_at = posted
            self.controller.scan(payload, source)
        post(run)

    def show(self, name: str) -> None:
        """Switch to screen ``name``, building it if it is a staff or setup screen not
        shown yet; back on a customer screen, those are dropped again (see
        :mod:`kiosk.ui.screens`: they cost memory a counter needs only meanwhile)."""
        if not self.sm.has_screen(name):
            self.sm.add_widget(screens.create(name, self.controller))
        self.sm.current = name
        if name in screens.KEPT and len(self.sm.screens) > len(screens.KEPT):
            Clock.schedule_once(self._drop_unkept, 0)

    def _drop_unkept(self, _dt=None) -> None:
        """Drop the staff and setup screens once the switch to a customer screen is over."""
        if self.sm.current not in screens.KEPT:
            return  # staff came back meanwhile
        if self.sm.transition.is_active:
            Clock.schedule_once(self._drop_unkept, 0.1)
            return
        for screen in list(self.sm.screens):
            if screen.name not in screens.KEPT:
                self.sm.remove_widget(screen)

    def _on_change(self, controller) -> None:
        self.lang = controller.lang
        self.language_name = LANGUAGE_NAMES.get(controller.lang, controller.lang)
        if self.sm is None:
            return
        if self.sm.current != controller.screen:
            self.show(controller.screen)
        self.sm.current_screen.refresh(controller)
        if controller.screen == "verdict" and self.scan_posted_at is not None:
            started, self.scan_posted_at = self.scan_posted_at, None

            def flipped(*_args):
                Window.unbind(on_flip=flipped)
                self.last_verdict_latency_ms = (time.perf_counter() - started) * 1000
            Window.bind(on_flip=flipped)
