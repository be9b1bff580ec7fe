"""The kiosk's words in its four languages: one gettext domain, ``kiosk``.

Every human-facing string of the device (touch screen, receipts, ``kiosk redeem``,
``kiosk doctor``, printer faults) is English source text marked in the code and
translated in ``kiosk/assets/locale/LANG/LC_MESSAGES/kiosk.po`` (``kiosk.mo`` at run
time, read with the stdlib :mod:`gettext`; Babel is only the dev-time tool:
``make catalogs``, see docs/ui.md "Translations"). ``tests/test_i18n.py`` fails when a
catalog misses a marked string, has an empty one, or a ``.mo`` is stale.

Three ways to mark a string:

* ``tr(text, lang)``: translate into ``lang`` now (the screens, receipts, the CLI);
* ``N_(text)``: mark only, translated where it is shown (tables of texts);
* ``_(text)``: translate into the language of the current :func:`speaking` block
  (the doctor's messages, built deep inside the checks).
"""

import gettext
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path

LANGUAGES = ("en", "uz", "kk", "ru")  # the one list; English is the source language
LANGUAGE_NAMES = {"en": "English", "uz": "O\u02bbzbekcha", "kk": "Қазақша", "ru": "Русский"}
DOMAIN = "kiosk"
LOCALE_DIR = Path(__file__).resolve().parent / "assets" / "locale"

_current: ContextVar[str] = ContextVar("kiosk_language", default="en")


def N_(text: str) -> str:
    """Mark a string for translation without translating it yet."""
    return text


def language(lang: str | None) -> str:
    """``lang`` if the kiosk speaks it, else English."""
    return lang if lang in LANGUAGES else "en"


@cache
def catalog(lang: str) -> gettext.NullTranslations:
    return gettext.translation(DOMAIN, LOCALE_DIR, [lang], fallback=True)


def tr(text: str, lang: str = "en") -> str:
    """``text`` in ``lang``; the English text when a translation is missing."""
    return catalog(language(lang)).gettext(text)


def _(text: str) -> str:
    """``text`` in the language of the enclosing :func:`speaking` block (else English)."""
    return tr(text, _current.get())


def current() -> str:
    """The language :func:`_` translates into here."""
    return _current.get()


@contextmanager
def speaking(lang: str | None) -> Iterator[str]:
    """Within the block, :func:`_` translates into ``lang`` (this thread/context only)."""
    token = _current.set(language(lang))
    try:
        yield _current.get()
    finally:
        _current.reset(token)
