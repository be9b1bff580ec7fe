"""Verdicts explained for staff at a terminal (``kiosk redeem``), in the kiosk's languages.

The touch screen words verdicts for customers in ``kiosk/ui/present.py``; both take
their words from the one gettext domain (:mod:`kiosk.i18n`), and texts they share
(``This reward has expired``...) are one msgid, translated once. These lines are
exact (timestamps, device ids, use counts) where the screen's are relative.
"""

from kiosk.core.ledger import Result
from kiosk.core.verdict import Verdict
from kiosk.i18n import N_, tr

REASONS = {
    Verdict.READY: N_("Ready to redeem"),
    Verdict.REDEEMED: N_("Redeemed"),
    Verdict.ALREADY_REDEEMED: N_("Already redeemed"),
    Verdict.EXHAUSTED: N_("All uses of this code are used up"),
    Verdict.EXPIRED: N_("This reward has expired"),
    Verdict.NOT_YET_VALID: N_("This reward is not valid yet"),
    Verdict.REVOKED: N_("This code was cancelled by the business"),
    Verdict.UNKNOWN: N_("This code is not in the reward list"),
    Verdict.WRONG_STORE: N_("This reward is for another store"),
    Verdict.NOT_A_CODE: N_("This QR code is not a reward code"),
    Verdict.NO_LIST: N_("No reward list is installed on this kiosk yet"),
}


def reason(verdict: Verdict, lang: str = "en") -> str:
    """The verdict in a few words, in ``lang``."""
    return tr(REASONS[verdict], lang)


def detail_line(result: Result, lang: str = "en") -> str:
    """The line staff need: when and where, or validity dates, in ``lang``."""
    d = result.detail
    if result.verdict in (Verdict.ALREADY_REDEEMED, Verdict.EXHAUSTED) and d.get("last_at"):
        where = d.get("last_device") or "?"
        store = d.get("last_store")
        text = (tr("last used {at} at {device} in store {store} ({uses}/{max} uses)", lang) if store
                else tr("last used {at} at {device} ({uses}/{max} uses)", lang))
        return text.format(at=d["last_at"], device=where, store=store, uses=d.get("uses"),
                           max=d.get("max_uses"))
    if result.verdict is Verdict.EXPIRED:
        return tr("valid until {date}", lang).format(date=d.get("valid_until"))
    if result.verdict is Verdict.NOT_YET_VALID:
        return tr("valid from {date}", lang).format(date=d.get("valid_from"))
    if result.verdict is Verdict.WRONG_STORE:
        return tr("valid in: {stores}", lang).format(stores=", ".join(d.get("stores") or []))
    if result.verdict is Verdict.REDEEMED:
        return tr("redemption id {id}", lang).format(id=result.redemption_id)
    return ""
