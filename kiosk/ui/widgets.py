"""Small widgets shared by the screens: text that fits its box, drawn icons, the
keypad, the camera hint.

Every label and button on the kiosk is a :class:`FitLabel` / :class:`FitButton`:
``max_font`` is the size the layout wants, and the text shrinks (measured with
Kivy's own text layout, never guessed from its length) until it fits its box
without breaking a word. Icons are drawn with canvas lines instead of font glyphs
(Noto Sans has no check mark), so they look the same in every language. The keypad
only reports keys; the screen passes them to the controller.

Colours: every text is at least 4.5:1 against its background (WCAG AA), checked by
``tests/test_ui_readable.py`` with :mod:`kiosk.ui.legibility`. Amber is light, so
its text is dark (``tone_text``).
"""

import bisect
import math

from kivy.animation import Animation
from kivy.clock import Clock
from kivy.core.text import Label as CoreLabel
from kivy.graphics import Color, Ellipse, Line
from kivy.properties import (
    BooleanProperty,
    ListProperty,
    NumericProperty,
    OptionProperty,
    StringProperty,
)
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.gridlayout import GridLayout
from kivy.uix.label import Label
from kivy.uix.widget import Widget

TONE_COLOURS = {
    "ok": (0.02, 0.40, 0.19, 1),
    "done": (0.02, 0.40, 0.19, 1),
    "used": (0.66, 0.10, 0.10, 1),
    "bad": (0.66, 0.10, 0.10, 1),
    "time": (0.98, 0.72, 0.15, 1),
    "info": (0.20, 0.30, 0.48, 1),
    "error": (0.45, 0.10, 0.40, 1),
    "idle": (0.08, 0.12, 0.22, 1),
    "staff": (0.16, 0.18, 0.22, 1),
    "warn": (0.55, 0.30, 0.0, 1),        # a ready verdict about to time out (flashes)
    "danger": (0.62, 0.08, 0.08, 1),     # "Yes, undo it"
    "done_paper": (0.97, 0.97, 0.95, 1),  # Done is light, so it never looks like Ready
    "done_ink": (0.04, 0.38, 0.18, 1),
}
DARK_TEXT = (0.10, 0.08, 0.02, 1)
LIGHT_TEXT = (1, 1, 1, 1)


def tone_colour(tone: str):
    return TONE_COLOURS.get(tone, TONE_COLOURS["idle"])


def tone_text(tone: str):
    """The text colour on a ``tone`` background: dark on amber, else white."""
    return DARK_TEXT if tone == "time" else LIGHT_TEXT


# whole-pixel font sizes about 8% apart (each is int(8 * 1.08 ** k), plus 1..7 px)
FONT_LADDER = sorted({*range(1, 8), *(int(8 * 1.08 ** k) for k in range(60))})


def font_step(size: float) -> int:
    """The largest ladder size not above ``size``. Kivy's SDL2 text provider opens (and
    caches) one font object per size: few sizes, little memory."""
    return FONT_LADDER[max(0, bisect.bisect_right(FONT_LADDER, size) - 1)]


def measure(text: str, font_size: float, wrap: float | None, **options) -> tuple[float, float, bool]:
    """(width, height, a word was broken) of ``text`` laid out by Kivy at ``font_size``,
    wrapped at ``wrap`` px (None: one line per paragraph)."""
    core = CoreLabel(text=text, font_size=font_size, text_size=(wrap, None), **options)
    w, h = core.render()
    rendered = sum(len("".join(word.text for word in line.words).split()) for line in core._cached_lines)
    return w, h, rendered > len(text.split())


class Fit:
    """Mixin for Label/Button: ``font_size`` follows ``max_font`` down to ``min_font``
    until the text fits the box (``text_size`` width or the width; the height unless
    ``fit_height`` is off, e.g. inside a ScrollView) and no word is broken."""

    max_font = NumericProperty(20)
    min_font = NumericProperty(9)
    fit_height = BooleanProperty(True)

    def __init__(self, **kwargs):
        self._fit_trigger = Clock.create_trigger(self.fit, -1)
        super().__init__(**kwargs)
        self.fbind("text", self._fit_trigger)
        for name in ("size", "text_size", "max_font", "min_font", "fit_height", "bold", "font_name",
                     "padding", "line_height"):
            self.fbind(name, self._fit_trigger)
        self._fit_trigger()

    def fitted(self, start: float, bold: bool | None = None) -> int:
        """The largest ladder size from ``start`` down at which the text fits
        (``bold`` overrides the label's own, to measure the wider face)."""
        size = max(self.min_font, font_step(start))
        text = self.text
        if not text.strip() or self.width <= 1 or self.height <= 1 or self.get_root_window() is None:
            return size  # nothing to fit, or not on screen (KioskScreen fits on entering)
        wrap = self.text_size[0]
        box_w = min(wrap or self.width, self.width)
        box_h = self.height if self.fit_height else float("inf")
        options = dict(font_name=self.font_name, bold=self.bold if bold is None else bold, halign=self.halign,
                       padding=self.padding, line_height=self.line_height)
        for _ in range(12):
            w, h, broken = measure(text, size, wrap, **options)
            if (w <= box_w and h <= box_h and not broken) or size <= self.min_font:
                break
            scale = min(box_w / w if w > box_w else 1.0,
                        (box_h / h) ** 0.5 if h > box_h else 1.0,
                        0.92 if broken else 1.0)
            size = max(self.min_font, font_step(min(size - 1, size * scale)))
        return size

    def fit(self, *_):
        size = self.fitted(self.max_font)
        if abs(self.font_size - size) > 0.01:
            self.font_size = size


class FitLabel(Fit, Label):
    pass


class FitButton(Fit, Button):
    """A button whose fill is ``tint`` at the alphas ``fill`` = (normal, pressed,
    disabled); set those, not ``background_color`` (one rule owns it)."""

    tint = ListProperty([1, 1, 1, 1])
    fill = ListProperty([0.16, 0.35, 0.06])


class Icon(Widget):
    """A disc (white unless ``disc`` says) with a drawn symbol: check, cross, clock,
    question or alert."""

    kind = OptionProperty("check", options=["check", "cross", "clock", "question", "alert"])
    colour = ListProperty([0.05, 0.50, 0.24, 1])
    disc = ListProperty([1, 1, 1, 1])

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.bind(pos=self.redraw, size=self.redraw, kind=self.redraw, colour=self.redraw,
                  disc=self.redraw)

    def redraw(self, *_):
        self.canvas.clear()
        r = min(self.width, self.height) / 2
        cx, cy = self.center
        w = max(2.0, r * 0.16)
        with self.canvas:
            Color(*self.disc)
            Ellipse(pos=(cx - r, cy - r), size=(2 * r, 2 * r))
            Color(*self.colour)
            getattr(self, f"_draw_{self.kind}")(cx, cy, r, w)

    def _draw_check(self, cx, cy, r, w):
        Line(points=[cx - r * .45, cy, cx - r * .12, cy - r * .35, cx + r * .48, cy + r * .35], width=w)

    def _draw_cross(self, cx, cy, r, w):
        d = r * .38
        Line(points=[cx - d, cy - d, cx + d, cy + d], width=w)
        Line(points=[cx - d, cy + d, cx + d, cy - d], width=w)

    def _draw_clock(self, cx, cy, r, w):
        Line(circle=(cx, cy, r * .55), width=w * .6)
        Line(points=[cx, cy + r * .4, cx, cy, cx + r * .3, cy - r * .1], width=w * .6)

    def _draw_question(self, cx, cy, r, w):
        Line(points=[cx - r * .25, cy + r * .25, cx - r * .1, cy + r * .42, cx + r * .15, cy + r * .42,
                     cx + r * .28, cy + r * .25, cx + r * .2, cy + r * .08, cx, cy - r * .05,
                     cx, cy - r * .22], width=w * .7)
        Ellipse(pos=(cx - w * .8, cy - r * .45 - w * .8), size=(w * 1.6, w * 1.6))

    def _draw_alert(self, cx, cy, r, w):
        Line(points=[cx, cy + r * .45, cx, cy - r * .12], width=w * .7)
        Ellipse(pos=(cx - w * .8, cy - r * .42 - w * .8), size=(w * 1.6, w * 1.6))


class CameraHint(Widget):
    """Chevrons that bounce towards the camera, so customers know where to hold the card."""

    direction = OptionProperty("up", options=["up", "down"])
    shift = NumericProperty(0)
    colour = ListProperty([1, 1, 1, 0.9])

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.bind(pos=self.redraw, size=self.redraw, shift=self.redraw, direction=self.redraw)
        self._anim = None

    def start(self):
        if self._anim is None:
            self._anim = (Animation(shift=1, duration=.7, t="in_out_sine")
                          + Animation(shift=0, duration=.7, t="in_out_sine"))
            self._anim.repeat = True
            self._anim.start(self)

    def stop(self):
        if self._anim is not None:
            self._anim.cancel(self)
            self._anim = None

    def redraw(self, *_):
        self.canvas.clear()
        sign = 1 if self.direction == "up" else -1
        cx, cy = self.center
        half = min(self.width * .3, self.height * .5)
        step = self.height * .22
        with self.canvas:
            for i in range(3):
                alpha = self.colour[3] * (0.35 + 0.3 * i)
                Color(self.colour[0], self.colour[1], self.colour[2], alpha)
                y = cy + sign * (step * (i - 1) + self.shift * step * .6)
                Line(points=[cx - half, y - sign * half * .5, cx, y, cx + half, y - sign * half * .5],
                     width=max(2, half * .08))


class KeyButton(FitButton):
    key = StringProperty("")


class Keypad(GridLayout):
    """A thumb-sized keypad. ``keys`` are shown in rows; presses dispatch ``on_key``."""

    keys = ListProperty([])
    labels = ListProperty([])
    __events__ = ("on_key",)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.bind(keys=self._build, labels=self._build)

    def _build(self, *_):
        self.clear_widgets()
        labels = self.labels or self.keys
        if self.keys and not self.cols:
            self.cols = int(math.ceil(math.sqrt(len(self.keys))))
        for key, label in zip(self.keys, labels, strict=False):
            button = KeyButton(key=key, text=label)
            button.bind(on_release=lambda b: self.dispatch("on_key", b.key))
            self.add_widget(button)

    def button(self, key: str):
        """The button for ``key`` (tests press it with real touch events)."""
        return next(b for b in self.children if b.key == key)

    def on_key(self, key):
        pass


class LanguageButton(FitButton):
    lang = StringProperty("en")
    chosen = BooleanProperty(False)


class LanguageBar(BoxLayout):
    """All four languages as labelled choices, each in its own words; the current one
    is bold and underlined. A tap dispatches ``on_pick(lang)``. ``fg`` is the text
    colour of the screen it sits on."""

    current = StringProperty("en")
    fg = ListProperty([1, 1, 1, 1])
    max_font = NumericProperty(16)  # the names share one size: the largest that fits all
    __events__ = ("on_pick",)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        from kiosk.ui.i18n import LANGUAGE_NAMES, LANGUAGES

        self._even_trigger = Clock.create_trigger(self._even, -1)
        for lang in LANGUAGES:
            button = LanguageButton(lang=lang, text=LANGUAGE_NAMES[lang], max_font=self.max_font)
            button.bind(on_release=lambda b: self.dispatch("on_pick", b.lang), size=self._even_trigger,
                        text_size=self._even_trigger)
            self.add_widget(button)
        self.bind(current=self._mark, fg=self._mark, max_font=self._even_trigger)
        self._mark()

    def _even(self, *_):
        # bold (the chosen one) is wider: measure every name bold
        common = min(b.fitted(self.max_font, bold=True) for b in self.children)
        for button in self.children:
            button.max_font = common

    def _mark(self, *_):
        for button in self.children:
            button.chosen = button.lang == self.current
            button.color = button.tint = self.fg

    def button(self, lang: str):
        """The button for ``lang`` (tests press it with real touch events)."""
        return next(b for b in self.children if b.lang == lang)

    def on_pick(self, lang):
        pass
