"""Plain-English explanations of verdicts, for the command line and logs.

The touch screen words its lines separately, translated, in ``kiosk/ui/present.py``
(catalogs in ``kiosk/assets/locale``); the two are not generated from one source yet.
"""

from kiosk.core.ledger import Result
from kiosk.core.verdict import Verdict

REASONS = {
    Verdict.READY: "Ready to redeem",
    Verdict.REDEEMED: "Redeemed",
    Verdict.ALREADY_REDEEMED: "Already redeemed",
    Verdict.EXHAUSTED: "All uses of this code are used up",
    Verdict.EXPIRED: "This reward has expired",
    Verdict.NOT_YET_VALID: "This reward is not valid yet",
    Verdict.REVOKED: "This code was cancelled by the business",
    Verdict.UNKNOWN: "This code is not in the reward list",
    Verdict.WRONG_STORE: "This reward is for another store",
    Verdict.NOT_A_CODE: "This QR code is not a reward code",
    Verdict.NO_LIST: "No reward list is installed on this kiosk yet",
}


def detail_line(result: Result) -> str:
    """The line staff need: when and where, or validity dates."""
    d = result.detail
    if result.verdict in (Verdict.ALREADY_REDEEMED, Verdict.EXHAUSTED) and d.get("last_at"):
        where = d.get("last_device") or "?"
        store = d.get("last_store")
        at_store = f" in store {store}" if store else ""
        return f"last used {d['last_at']} at {where}{at_store} ({d.get('uses')}/{d.get('max_uses')} uses)"
    if result.verdict is Verdict.EXPIRED:
        return f"valid until {d.get('valid_until')}"
    if result.verdict is Verdict.NOT_YET_VALID:
        return f"valid from {d.get('valid_from')}"
    if result.verdict is Verdict.WRONG_STORE:
        return f"valid in: {', '.join(d.get('stores') or [])}"
    if result.verdict is Verdict.REDEEMED:
        return f"redemption id {result.redemption_id}"
    return ""
