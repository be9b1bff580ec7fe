"""The dashboard in the kiosk's four languages: gettext catalogs of the domain ``hq``.

English is the source text. Catalogs live in ``sync/hq/web/locale/LANG/LC_MESSAGES``
(``hq.po`` for translators, ``hq.mo`` at run time, read with the stdlib ``gettext``).
Babel is the dev-time tool: ``make catalogs`` (kiosk and HQ) extracts the strings from the
templates and pages (``pybabel extract``), merges them into the ``.po`` files
(``update``) and compiles them (``compile``); ``tests/test_hq_i18n.py`` fails when a
catalog misses a string or a ``.mo`` is stale.

The language is the one chosen with ``?lang=`` (kept in the session), else the
browser's ``Accept-Language``, else English.
"""

import gettext
from functools import cache
from pathlib import Path

from kiosk.i18n import LANGUAGE_NAMES as NAMES  # noqa: F401  (the language menu: pages.py)
from kiosk.i18n import LANGUAGES

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "hq"


def N_(text: str) -> str:
    """Mark a string for extraction; it is translated where it is shown."""
    return text


@cache
def translations(lang: str) -> gettext.NullTranslations:
    if lang == "en":
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[lang], fallback=True)


def choose(session: dict, query_lang: str | None, accept: str) -> str:
    """The page language (and remember an explicit choice in the session)."""
    if query_lang in LANGUAGES:
        session["lang"] = query_lang
    if session.get("lang") in LANGUAGES:
        return session["lang"]
    for part in accept.split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return "en"


# Words stored as identifiers, shown as text (translated where shown).
LABELS = {
    "redeem": N_("redeemed"), "void": N_("undone"),
    "online": N_("online"), "offline": N_("offline"),
    "list behind": N_("list behind"), "outbox growing": N_("outbox growing"),
    "over_redeemed": N_("used more often than allowed"),
    "void_unknown": N_("undo of a redemption HQ has not seen"),
    "void_refused": N_("undo sent by another device (refused)"),
    "sender_mismatch": N_("sent under another device's name"),
    "accept": N_("accept"), "charge_back": N_("charge back"), "note": N_("note only"),
    # refusal reasons on the friction page (sync/hq/friction.py REASONS)
    "already_redeemed": N_("already used"), "exhausted": N_("no uses left"),
    "expired": N_("expired"), "not_yet_valid": N_("not valid yet"),
    "revoked": N_("withdrawn"), "unknown": N_("unknown code"),
    "wrong_store": N_("for another store"), "not_a_code": N_("not a code"),
    "no_list": N_("no code list on the kiosk"),
}
