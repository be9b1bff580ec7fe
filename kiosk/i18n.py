"""The kiosk's words in its four languages: one gettext domain, ``kiosk``.

Every human-facing string of the device (touch screen, receipts, the ``kiosk`` commands,
``kiosk doctor``, printer faults and print outcomes, config and provisioning errors) is
English source text marked in the code and
translated in ``kiosk/assets/locale/LANG/LC_MESSAGES/kiosk.po`` (``kiosk.mo`` at run
time, read with the stdlib :mod:`gettext`; Babel is only the dev-time tool:
``make catalogs``, see docs/ui.md "Translations"). ``tests/test_i18n.py`` fails when a
catalog misses a marked string, has an empty one, or a ``.mo`` is stale.

Four ways to mark a string:

* ``tr(text, lang)``: translate into ``lang`` now (the screens, receipts, the CLI);
* ``N_(text)``: mark only, translated where it is shown (tables of texts);
* ``_(text)``: translate into the language of the current :func:`speaking` block
  (the doctor's messages, built deep inside the checks; the CLI's commands, which
  :func:`kiosk.cli.main` runs inside ``speaking(the command's language)``);
* ``Msg(text, **values)``: a text and its values kept apart until shown, for words
  made where the language is not known yet: errors (``ConfigError(Msg(...))``,
  ``str(exc)`` stays English for logs and ``--json``), print outcomes, the printer's
  status. :func:`say` puts one into words in a language.
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


class Msg(str):
    """A marked text with its ``{named}`` values, put into words when shown.

    It *is* the English text (a ``str``: logs, ``--json``, an exception's ``str``,
    code that compares or searches it); :meth:`render` or :func:`say` give another
    language. A value may be a :class:`Msg` itself (or an error carrying one): it is
    rendered in the same language. String operations give plain (English) strings."""

    def __new__(cls, text: str, /, **values):
        self = super().__new__(cls, _fill(text, values, "en"))
        self.text, self.values = text, values
        return self

    def render(self, lang: str = "en") -> str:
        return _fill(self.text, self.values, lang)

    def map(self, fn) -> "Msg":
        """The same text with ``fn`` applied to each plain value (nested too)."""
        return Msg(self.text, **{k: v.map(fn) if isinstance(v, Msg) else fn(v) for k, v in self.values.items()})

    def to_json(self) -> dict:
        """``{"text", "values"}`` with only JSON types (nested Msgs, and errors made with
        one, as the same shape; other values as numbers or their ``str``), for a Msg
        that crosses a process boundary (:func:`kiosk.provision.record_result`)."""
        return {"text": self.text, "values": {k: _json_value(v) for k, v in self.values.items()}}

    @classmethod
    def from_json(cls, data) -> "Msg":
        """The Msg :meth:`to_json` wrote; anything else (a plain string, a text whose
        values do not fit it) gives an untranslated Msg, never an exception."""
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            return cls("{text}", text=str(data or ""))
        values = data.get("values") if isinstance(data.get("values"), dict) else {}
        try:
            return cls(data["text"], **{str(k): cls.from_json(v) if isinstance(v, dict) else v
                                        for k, v in values.items()})
        except (KeyError, IndexError, ValueError, TypeError):  # text and values do not fit
            return cls("{text}", text=data["text"])


def _json_value(value):
    msg = _msg_of(value) if isinstance(value, BaseException) else value
    if isinstance(msg, Msg):
        return msg.to_json()
    if isinstance(value, bool | int | float) or value is None:
        return value
    return str(value)


def _fill(text: str, values: dict, lang: str) -> str:
    said = {k: say(v, lang) if isinstance(v, Msg | Exception) else v for k, v in values.items()}
    return tr(text, lang).format(**said) if values else tr(text, lang)


def say(thing, lang: str | None = None) -> str:
    """``thing`` in ``lang`` (default: the current :func:`speaking` language): a
    :class:`Msg`, an error made with one (``KioskError.msg``, or any exception whose
    only argument is a Msg, e.g. ``ValueError(Msg(...))``), else its ``str``."""
    lang = current() if lang is None else lang
    msg = _msg_of(thing) if isinstance(thing, BaseException) else thing
    if isinstance(msg, Msg):
        return msg.render(lang)
    return str(thing)


def _msg_of(error: BaseException):
    """The Msg an error was made with (``KioskError.msg``, or its only argument)."""
    return getattr(error, "msg", None) or (error.args[0] if len(error.args) == 1 else None)
