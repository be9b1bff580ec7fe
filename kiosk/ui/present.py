"""What each verdict looks like: words, tone, icon and sound, in a given language.

Pure functions over :class:`kiosk.core.ledger.Result`, no Kivy, so they are tested
directly. Tone, icon and the signal (LED/buzzer pattern) always change together:
the kiosk never relies on colour alone.
"""

from dataclasses import dataclass
from datetime import datetime

from kiosk.core import timefmt
from kiosk.core.bundle import reward_title
from kiosk.core.verdict import Verdict
from kiosk.ui.i18n import N_, number, short_time, tr

# Customer-facing reasons, plain language.
REASONS = {
    Verdict.READY: N_("Your reward is ready"),
    Verdict.REDEEMED: N_("Enjoy! Your reward is redeemed"),
    Verdict.ALREADY_REDEEMED: N_("This reward has already been used"),
    Verdict.EXHAUSTED: N_("All uses of this reward are used up"),
    Verdict.EXPIRED: N_("This reward has expired"),
    Verdict.NOT_YET_VALID: N_("This reward is not valid yet"),
    Verdict.REVOKED: N_("This reward was cancelled"),
    Verdict.UNKNOWN: N_("We could not find this code"),
    Verdict.WRONG_STORE: N_("This reward is for another store"),
    Verdict.NOT_A_CODE: N_("This QR code is not a reward code"),
    Verdict.NO_LIST: N_("Rewards are not set up on this kiosk yet"),
}

REWARD_TYPES = {
    "item": N_("Free item"),
    "percent": N_("{value}% off"),
    "amount": N_("{value} voucher"),
    "addon": N_("Free add-on"),
}

# tone -> (icon drawn by widgets.Icon, signal kind for kiosk.hardware.signals)
TONES = {
    "ok": ("check", "ready"),
    "done": ("check", "redeemed"),
    "used": ("cross", "refused"),
    "time": ("clock", "refused"),
    "bad": ("cross", "refused"),
    "info": ("question", "refused"),
    "error": ("alert", "error"),
}

_TONE_OF = {
    Verdict.READY: "ok", Verdict.REDEEMED: "done", Verdict.ALREADY_REDEEMED: "used",
    Verdict.EXHAUSTED: "used", Verdict.EXPIRED: "time", Verdict.NOT_YET_VALID: "time",
    Verdict.REVOKED: "bad", Verdict.UNKNOWN: "bad", Verdict.WRONG_STORE: "bad",
    Verdict.NOT_A_CODE: "info", Verdict.NO_LIST: "error",
}


@dataclass(frozen=True)
class VerdictView:
    verdict: Verdict
    tone: str
    icon: str
    signal: str
    reason: str
    title: str
    type_line: str
    detail: str
    can_confirm: bool


def reward_type_line(reward: dict | None, lang: str) -> str:
    """ "Free item", "10% off", "50 000 UZS voucher", "Free add-on"."""
    if not reward or reward.get("type") not in REWARD_TYPES:
        return ""
    value = number(reward.get("value", ""))
    if reward["type"] == "amount" and reward.get("currency"):
        value = f"{value} {reward['currency']}"
    return tr(REWARD_TYPES[reward["type"]], lang).format(value=value)


def _when(text: str | None, lang: str, now: datetime | None) -> str:
    if not text:
        return "?"
    try:
        return short_time(timefmt.parse(text), lang, now)
    except ValueError:
        return text


def staff_detail(result, lang: str, *, this_device: str = "", now: datetime | None = None) -> str:
    """The line staff need: when and where it was used, or the validity dates."""
    d, v = result.detail, result.verdict
    if v in (Verdict.ALREADY_REDEEMED, Verdict.EXHAUSTED) and d.get("last_at"):
        device = d.get("last_device") or "?"
        where = tr("this kiosk", lang) if device == this_device else device
        line = tr("Redeemed {when} at {where}", lang).format(
            when=_when(d["last_at"], lang, now), where=where)
        if (d.get("max_uses") or 1) > 1:
            line += " · " + tr("{uses} of {max} uses", lang).format(uses=d.get("uses"), max=d["max_uses"])
        return line
    if v is Verdict.EXPIRED:
        return tr("Valid until {when}", lang).format(when=_when(d.get("valid_until"), lang, now))
    if v is Verdict.NOT_YET_VALID:
        return tr("Valid from {when}", lang).format(when=_when(d.get("valid_from"), lang, now))
    if v is Verdict.WRONG_STORE:
        return tr("Valid in stores: {stores}", lang).format(stores=", ".join(d.get("stores") or []))
    if v is Verdict.UNKNOWN:
        return tr("Code …{code} is not in code list version {version}", lang).format(
            code=result.masked_code or "?", version=d.get("list_version", "?"))
    if v is Verdict.REVOKED:
        return tr("Code …{code} was revoked by the business", lang).format(code=result.masked_code or "?")
    if v is Verdict.NOT_A_CODE:
        text = (result.payload or "")[:40]
        return tr("Scanned: {text}", lang).format(text=text)
    if v is Verdict.NO_LIST:
        return tr("No code list installed: see Staff › Sync", lang)
    if v in (Verdict.READY, Verdict.REDEEMED) and result.masked_code:
        return tr("Code …{code}", lang).format(code=result.masked_code)
    return ""


def verdict_view(result, lang: str, *, this_device: str = "", now: datetime | None = None) -> VerdictView:
    tone = _TONE_OF.get(result.verdict, "error")
    icon, signal = TONES[tone]
    return VerdictView(
        verdict=result.verdict, tone=tone, icon=icon, signal=signal,
        reason=tr(REASONS[result.verdict], lang),
        title=(reward_title(result.reward, lang) or result.title) if result.verdict.ok else "",
        type_line=reward_type_line(result.reward, lang) if result.verdict.ok else "",
        detail=staff_detail(result, lang, this_device=this_device, now=now),
        can_confirm=result.verdict is Verdict.READY,
    )
