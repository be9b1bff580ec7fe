"""Is every text on screen readable? Measured from the rendered widget tree.

``problems(screen, window_size)`` walks a screen's widgets and reports, per text:

* overflow: the rendered texture is wider or taller than the label's box (it would
  overlap its neighbours), or a word was broken across lines ("Qaytaris/h"), or
  the text reaches outside the window;
* contrast: the text colour (its alpha blended in) against what is drawn behind it
  (the window's black, every ancestor's ``canvas.before`` fill, a button's own
  background) is under ``MIN_CONTRAST`` (WCAG 2's 4.5:1).

Used by ``kiosk screenshots --check`` and ``tests/test_ui_readable.py``; no Kivy
import at module level, so the colour maths is testable without a window.
"""

MIN_CONTRAST = 4.5
SLACK = 1.0  # px of rounding Kivy may add to a texture


def luminance(rgb) -> float:
    """WCAG 2 relative luminance of an sRGB colour with channels in 0..1."""
    def lin(c):
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (lin(float(c)) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def over(top, bottom, alpha: float | None = None) -> tuple:
    """``top`` (rgba) painted over the opaque ``bottom`` (rgb)."""
    a = top[3] if alpha is None and len(top) > 3 else (1.0 if alpha is None else alpha)
    return tuple(a * t + (1 - a) * b for t, b in zip(top[:3], bottom[:3], strict=False))


def _chain(widget):
    chain = []
    while widget is not None:
        chain.append(widget)
        parent = widget.parent
        widget = parent if parent is not widget else None
    return chain[::-1]


def _fills(widget):
    """Colours of the rectangles a widget paints behind its children."""
    from kivy.graphics import BorderImage, Color, Rectangle, RoundedRectangle

    colour = None
    for instruction in widget.canvas.before.children:
        if isinstance(instruction, Color):
            colour = tuple(instruction.rgba)
        elif isinstance(instruction, (Rectangle, RoundedRectangle, BorderImage)) and colour:
            yield colour


def backdrop(widget) -> tuple:
    """The opaque colour behind ``widget``'s text."""
    from kivy.core.window import Window
    from kivy.uix.button import Button

    bg = tuple(Window.clearcolor[:3])
    for w in _chain(widget):
        for fill in _fills(w):
            bg = over(fill, bg)
        if isinstance(w, Button):
            bg = over(w.background_color, bg)
    return bg


def opacity(widget) -> float:
    value = 1.0
    for w in _chain(widget):
        value *= w.opacity
    return value


def text_colour(label, bg) -> tuple:
    colour = label.disabled_color if label.disabled else label.color
    return over(colour, bg, colour[3] * opacity(label))


def _in_scroll(widget) -> bool:
    from kivy.uix.scrollview import ScrollView

    return any(isinstance(w, ScrollView) for w in _chain(widget)[:-1])


def broken_words(label) -> bool:
    """True when Kivy split a word over two lines (it does when a word is wider
    than the box)."""
    lines = getattr(label._label, "_cached_lines", None) or []
    rendered = [t for line in lines for t in "".join(w.text for w in line.words).split()]
    return bool(rendered) and len(rendered) > len(label.text.split())


def text_box(label) -> tuple:
    """Where the texture is drawn, in window coordinates: (x, y, w, h)."""
    tw, th = label.texture_size
    x, y = label.to_window(label.x, label.y)
    return x + (label.width - tw) / 2, y + (label.height - th) / 2, tw, th


def problems(root, window_size) -> list[str]:
    """Every unreadable text under ``root``, one line each ("" list when all good)."""
    from kivy.uix.label import Label

    found = []
    win_w, win_h = window_size
    for w in root.walk(restrict=True):
        if not isinstance(w, Label) or not w.text.strip() or opacity(w) <= 0.01:
            continue
        if w.width < 2 or w.height < 2:
            continue
        w.texture_update()
        name = f"{type(w).__name__} {w.text[:40]!r}"
        tw, th = w.texture_size
        box_w = min(w.width, w.text_size[0] or w.width)
        if tw > box_w + SLACK:
            found.append(f"{name}: text {tw:.0f} px wide in a {box_w:.0f} px box")
        scrolls = _in_scroll(w)
        if not scrolls and th > w.height + SLACK:
            found.append(f"{name}: text {th:.0f} px tall in a {w.height:.0f} px box")
        if broken_words(w):
            found.append(f"{name}: a word is broken across lines")
        x, y, bw, bh = text_box(w)
        if not scrolls and (x < -SLACK or y < -SLACK or x + bw > win_w + SLACK or y + bh > win_h + SLACK):
            found.append(f"{name}: text reaches outside the window")
        bg = backdrop(w)
        ratio = contrast(text_colour(w, bg), bg)
        if ratio < MIN_CONTRAST:
            found.append(f"{name}: contrast {ratio:.2f}:1 (under {MIN_CONTRAST}:1)")
    return found
