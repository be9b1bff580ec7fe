"""Counts the touches Kivy delivers inside the virtual Pi (pushed in by vpi_test.py).

Run with the kiosk's own Python and environment, as the kiosk user, while kiosk.service
is stopped: it sets Kivy up exactly as ``kiosk ui`` does (``configure_kivy`` and
``one_touch_path``, SDL2 on KMS/DRM, full screen), shows a window, prints ``READY``,
then one line ``DOWN x y device`` per touch-down that reaches a widget, and exits after
SECONDS. vpi_test.py taps a uinput touch screen (guest_touch.py) meanwhile and expects
each tap exactly once (issue 12, defect 4: SDL's events and Kivy's probesysfs gave
every finger twice).

Usage: guest_tap_count.py SECONDS
"""

import sys
import tempfile
from pathlib import Path

from kiosk.ui.kivyconf import configure_kivy
from kiosk.ui.runner import one_touch_path


def main(seconds: float) -> int:
    configure_kivy(width=800, height=480, fullscreen=True,
                   home=Path(tempfile.mkdtemp(prefix="tap-count-")))
    one_touch_path()
    from kivy.app import App
    from kivy.clock import Clock
    from kivy.uix.widget import Widget

    class Counter(Widget):
        def on_touch_down(self, touch):
            print(f"DOWN {touch.x:.0f} {touch.y:.0f} {touch.device}", flush=True)
            return True

    class Probe(App):
        def build(self):
            Clock.schedule_once(lambda _dt: print("READY", flush=True), 0.5)
            Clock.schedule_once(lambda _dt: self.stop(), seconds)
            return Counter()

    Probe().run()
    return 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1])))
