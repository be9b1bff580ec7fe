"""The touch screen's language helpers over the kiosk's one gettext domain (:mod:`kiosk.i18n`).

``tr(text, lang)`` looks a string up in one language (English is the source text).
In .kv files it is used as ``tr("Confirm", app.lang)``: naming ``app.lang`` makes Kivy
re-evaluate the label when the language changes. ``N_`` marks strings that are
translated later (tables of texts); ``tests/test_i18n.py`` checks that every
marked string is translated in every catalog and that the font can draw it.
"""

from datetime import datetime

from kiosk.i18n import LANGUAGE_NAMES, LANGUAGES, N_, catalog, tr

__all__ = ["LANGUAGES", "LANGUAGE_NAMES", "N_", "catalog", "tr", "next_language", "short_time",
           "age", "number"]


MONTHS = (N_("Jan"), N_("Feb"), N_("Mar"), N_("Apr"), N_("May"), N_("Jun"), N_("Jul"),
          N_("Aug"), N_("Sep"), N_("Oct"), N_("Nov"), N_("Dec"))


def next_language(lang: str) -> str:
    """The language after ``lang`` in the language button's cycle."""
    return LANGUAGES[(LANGUAGES.index(lang) + 1) % len(LANGUAGES)] if lang in LANGUAGES else "en"


def short_time(when: datetime, lang: str, now: datetime | None = None) -> str:
    """Local "12 Nov 14:02" (with the year when it is not this year)."""
    local = when.astimezone()
    month = tr(MONTHS[local.month - 1], lang)
    text = f"{local.day} {month} {local:%H:%M}"
    if now is not None and now.astimezone().year != local.year:
        text = f"{local.day} {month} {local.year} {local:%H:%M}"
    return text


def age(seconds: float, lang: str) -> str:
    """A coarse age: "5 min", "3 h", "2 d"."""
    seconds = max(0, seconds)
    if seconds < 3600:
        return tr("{n} min", lang).format(n=int(seconds // 60))
    if seconds < 2 * 86400:
        return tr("{n} h", lang).format(n=int(seconds // 3600))
    return tr("{n} d", lang).format(n=int(seconds // 86400))


def number(value) -> str:
    """50000 -> "50 000" (thin grouping used in all four markets)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return f"{value:,}".replace(",", "\u00a0")
    return str(value)
