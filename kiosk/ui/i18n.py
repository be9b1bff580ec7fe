"""Translations for the touch screen: gettext catalogs in ``kiosk/assets/locale``.

``tr(text, lang)`` looks a string up in one language (English is the source text).
In .kv files it is used as ``tr("Confirm", app.lang)``: naming ``app.lang`` makes Kivy
re-evaluate the label when the language changes. ``N_`` marks strings that are
translated later (tables of texts); ``tests/test_ui_i18n.py`` checks that every
marked string is translated in every catalog and that the font can draw it.
"""

import gettext
from datetime import datetime
from functools import cache

from kiosk.ui.catalogs import DOMAIN, LOCALE_DIR

LANGUAGES = ("en", "uz", "kk", "ru")
LANGUAGE_NAMES = {"en": "English", "uz": "O\u02bbzbekcha", "kk": "Қазақша", "ru": "Русский"}


def N_(text: str) -> str:
    """Mark a string for translation without translating it yet."""
    return text


MONTHS = (N_("Jan"), N_("Feb"), N_("Mar"), N_("Apr"), N_("May"), N_("Jun"), N_("Jul"),
          N_("Aug"), N_("Sep"), N_("Oct"), N_("Nov"), N_("Dec"))


@cache
def catalog(lang: str) -> gettext.NullTranslations:
    return gettext.translation(DOMAIN, LOCALE_DIR, [lang], fallback=True)


def tr(text: str, lang: str = "en") -> str:
    """``text`` in ``lang``; the English text when a translation is missing."""
    return catalog(lang).gettext(text)


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
