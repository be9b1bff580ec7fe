"""What each verdict looks like: words, tone, icon and sound, in a given language.

Pure functions over :class:`kiosk.core.ledger.Result`, no Kivy, so they are tested
directly. Tone, icon and the signal (LED/buzzer pattern) always change together:
the kiosk never relies on colour alone.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

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

# What the customer can do next, per refusal (the staff line says what happened).
NEXT_STEPS = {
    Verdict.ALREADY_REDEEMED: N_("Each reward can be used once. Your wallet card may hold other rewards."),
    Verdict.EXHAUSTED: N_("Each reward can be used once. Your wallet card may hold other rewards."),
    Verdict.EXPIRED: N_("Please ask staff about a new reward."),
    Verdict.NOT_YET_VALID: N_("Please come back when it starts."),
    Verdict.REVOKED: N_("Please ask staff for help."),
    Verdict.UNKNOWN: N_("Staff can type the code printed under the QR."),
    Verdict.WRONG_STORE: N_("Please use it in one of those stores."),
    Verdict.NOT_A_CODE: N_("Open your loyalty card in your phone's wallet and show its QR code."),
    Verdict.NO_LIST: N_("Please ask staff for help."),
}

# The printer's fault words (kiosk.hardware.printer.faults) in plain, translated words.
PRINTER_FAULTS = {
    "unplugged": N_("Printer not found: check that it is plugged in and switched on."),
    "offline": N_("Printer is offline: check that it is switched on."),
    "refused": N_("Printer does not answer on the network: check that it is switched on and its cable."),
    "timeout": N_("Printer did not answer in time: check its cable and power."),
    "paper_out": N_("Printer is out of paper: load a new roll."),
    "cover_open": N_("Printer cover is open: close it."),
    "busy": N_("Printer is busy: unplug it and plug it in again."),
    "permission": N_("The kiosk may not use the printer: call the technician."),
    "error": N_("The printer has a problem: call the technician."),
}

REWARD_TYPES = {
    "item": N_("Free item"),
    "percent": N_("{percent} off"),  # {percent}: "10%" (a bare "%" reads as %-format to Babel)
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
    next_step: str = ""


def printer_problem(message: str | None, lang: str) -> str:
    """A printer's fault message (English, with its address) as plain words in ``lang``."""
    text = (message or "").strip()
    kind = "error"
    if text:
        from kiosk.hardware.printer.faults import MESSAGES  # printing is loaded by now

        kind = next((k for k, m in MESSAGES.items() if k != "error" and text.startswith(m)), "error")
    return tr(PRINTER_FAULTS[kind], lang)


def reward_type_line(reward: dict | None, lang: str) -> str:
    """ "Free item", "10% off", "50 000 UZS voucher", "Free add-on"."""
    if not reward or reward.get("type") not in REWARD_TYPES:
        return ""
    value = number(reward.get("value", ""))
    if reward["type"] == "amount" and reward.get("currency"):
        value = f"{value} {reward['currency']}"
    return tr(REWARD_TYPES[reward["type"]], lang).format(value=value, percent=f"{value}%")


def relative(when: datetime, lang: str, now: datetime | None = None) -> str:
    """ "just now", "95 min ago", "5 h ago", "3 d ago", "in 5 d"; a date beyond two weeks."""
    now = now or datetime.now(UTC)
    seconds = (now - when).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    if seconds >= 14 * 86400:
        return short_time(when, lang, now)
    if seconds < 60:
        return tr("just now", lang) if not future else tr("in a minute", lang)
    if seconds < 120 * 60:
        n, text = int(seconds // 60), (N_("in {n} min") if future else N_("{n} min ago"))
    elif seconds < 48 * 3600:
        n, text = int(seconds // 3600), (N_("in {n} h") if future else N_("{n} h ago"))
    else:
        n, text = int(seconds // 86400), (N_("in {n} d") if future else N_("{n} d ago"))
    return tr(text, lang).format(n=n)


def _when(text: str | None, lang: str, now: datetime | None) -> str:
    if not text:
        return "?"
    try:
        return relative(timefmt.parse(text), lang, now)
    except ValueError:
        return "?"


def scanned_kind(payload: str | None, lang: str) -> str:
    """What a non-reward QR is, without showing its content (a Wi-Fi QR holds a password)."""
    text = (payload or "").strip()
    if text.upper().startswith("WIFI:"):
        return tr("This is a Wi-Fi network QR code", lang)
    parts = urlsplit(text) if "://" in text else None
    if parts is not None and parts.scheme in ("http", "https") and parts.hostname:
        return tr("This is a link to {site}", lang).format(site=parts.hostname)
    return tr("This QR code holds something else", lang)


def staff_detail(result, lang: str, *, this_device: str = "", now: datetime | None = None,
                 device_name: str = "") -> str:
    """The line staff need: when and where it was used, or the validity dates.
    ``device_name`` is this counter's friendly name (``[device] name``)."""
    d, v = result.detail, result.verdict
    if v in (Verdict.ALREADY_REDEEMED, Verdict.EXHAUSTED) and d.get("last_at"):
        device = d.get("last_device") or "?"
        where = (device_name or tr("this kiosk", lang)) if device == this_device else device
        line = tr("Redeemed {when} at {where}", lang).format(
            when=_when(d["last_at"], lang, now), where=where)
        if (d.get("max_uses") or 1) > 1:
            line += " · " + tr("{uses} of {max} uses", lang).format(uses=d.get("uses"), max=d["max_uses"])
        return line
    if v is Verdict.EXPIRED:
        return tr("Expired {when}", lang).format(when=_when(d.get("valid_until"), lang, now))
    if v is Verdict.NOT_YET_VALID:
        return tr("Starts {when}", lang).format(when=_when(d.get("valid_from"), lang, now))
    if v is Verdict.WRONG_STORE:
        return tr("Valid in stores: {stores}", lang).format(stores=", ".join(d.get("stores") or []))
    if v is Verdict.UNKNOWN:
        return tr("Code …{code} is not in code list version {version}", lang).format(
            code=result.masked_code or "?", version=d.get("list_version", "?"))
    if v is Verdict.REVOKED:
        return tr("Code …{code} was revoked by the business", lang).format(code=result.masked_code or "?")
    if v is Verdict.NOT_A_CODE:
        return scanned_kind(result.payload, lang)
    if v is Verdict.NO_LIST:
        return tr("No code list installed: see Staff › Sync", lang)
    if v in (Verdict.READY, Verdict.REDEEMED) and result.masked_code:
        return tr("Code …{code}", lang).format(code=result.masked_code)
    return ""


def verdict_view(result, lang: str, *, this_device: str = "", now: datetime | None = None,
                 device_name: str = "") -> VerdictView:
    """Ready: the reward is the title, its type below. Refused: the reason, then the
    reward's name (``type_line``), what happened (``detail``) and what to do next."""
    tone = _TONE_OF.get(result.verdict, "error")
    icon, signal = TONES[tone]
    ok = result.verdict.ok
    name = reward_title(result.reward, lang) or result.title or ""
    return VerdictView(
        verdict=result.verdict, tone=tone, icon=icon, signal=signal,
        reason=tr(REASONS[result.verdict], lang),
        title=name if ok else "",
        type_line=reward_type_line(result.reward, lang) if ok else name,
        detail=staff_detail(result, lang, this_device=this_device, now=now, device_name=device_name),
        can_confirm=result.verdict is Verdict.READY,
        next_step=tr(NEXT_STEPS[result.verdict], lang) if result.verdict in NEXT_STEPS else "",
    )
