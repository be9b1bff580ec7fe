"""What a redemption receipt says, in which language, in which order. No hardware.

A :class:`Receipt` is a list of blocks (text lines, rules, the QR code, the logo)
that every printer back end lays out its own way: ESC/POS text or raster lines on a
thermal printer, or a PNG for ``preview://``. Keeping the content here, pure, lets
the tests check the wording of all four languages without a printer, and lets the
UI show the same strings later.

Receipt labels are English source texts in :data:`LABELS`, translated through the
kiosk's gettext catalogs (:mod:`kiosk.i18n`) like every other string of the device.
"""

from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from kiosk.i18n import N_, language, tr

LABELS: dict[str, str] = {
    "title": N_("Reward redeemed"), "reward": N_("Reward"), "value": N_("Value"),
    "code": N_("Code"), "time": N_("Time"), "clock": N_("Clock"), "store": N_("Store"),
    "device": N_("Device"), "redemption": N_("Redemption ID"), "reprint": N_("REPRINT"),
    "clock.synced": N_("network time"), "clock.rtc": N_("hardware clock"),
    "clock.unsynced": N_("unverified clock"), "free": N_("free"), "footer": N_("Thank you!"),
    "sample": N_("TEST PRINT"),
}


def labels(lang: str) -> dict[str, str]:
    """Every receipt label in ``lang`` (English for an unknown language)."""
    return {key: tr(text, lang) for key, text in LABELS.items()}


def label(lang: str, key: str) -> str:
    """The label in ``lang``, falling back to English for an unknown language."""
    return tr(LABELS[key], lang)


# -- blocks -------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    """One line of text; ``right`` is a value printed flush right on the same row."""

    text: str
    right: str = ""
    size: str = "normal"  # "small" | "normal" | "large"
    bold: bool = False
    align: str = "left"  # "left" | "center"


@dataclass(frozen=True)
class Rule:
    """A horizontal separator."""


@dataclass(frozen=True)
class QRCode:
    data: str


@dataclass(frozen=True)
class Logo:
    path: str


Block = Line | Rule | QRCode | Logo


@dataclass(frozen=True)
class Receipt:
    blocks: tuple[Block, ...]
    lang: str
    redemption_id: str
    reprint: bool = False

    def text_lines(self) -> list[str]:
        """Every text line as plain strings (for logs, tests and the preview)."""
        return [f"{b.text} {b.right}".strip() for b in self.blocks if isinstance(b, Line)]


@dataclass(frozen=True)
class ReceiptData:
    """Everything a receipt shows, gathered from the redemption and the config."""

    redemption_id: str
    business_name: str
    reward_title: str | dict  # one title, or {lang: title} as in the bundle's rewards
    at: datetime
    clock: str  # "synced" | "rtc" | "unsynced"
    store: str
    device: str
    masked_code: str | None = None
    reward: dict | None = None  # {"type": ..., "value": ..., "currency": ...}
    footer: str | dict | None = None  # None: the language's default ("Thank you!")
    logo: str | None = None
    reprint: bool = False
    sample: bool = False
    tz: tzinfo | None = None
    extra: dict = field(default_factory=dict)


# -- content ------------------------------------------------------------------
def pick(value: str | dict | None, lang: str) -> str:
    """A text in ``lang`` from a plain string or a ``{lang: text}`` table."""
    if isinstance(value, dict):
        return value.get(lang) or value.get("en") or next(iter(value.values()), "")
    return value or ""


def reward_value(reward: dict | None, lang: str) -> str:
    """The reward's value as a short string: ``10%``, ``50 000 UZS``, ``free``."""
    if not reward:
        return ""
    kind, value = reward.get("type"), reward.get("value")
    if kind == "percent" and isinstance(value, int | float):
        return f"{value:g}%"
    if kind == "amount" and isinstance(value, int | float):
        amount = f"{value:,.0f}".replace(",", " ") if value == int(value) else f"{value:,.2f}".replace(",", " ")
        currency = reward.get("currency") or ""
        return f"{amount} {currency}".strip()
    if kind == "item":
        return label(lang, "free")
    return "" if value is None else str(value)


def masked(code: str | None) -> str:
    """The last four characters, the rest hidden (plain ASCII so any printer shows it)."""
    return f"****{code[-4:]}" if code else "-"


def format_time(at: datetime, tz: tzinfo | None = None) -> str:
    """Local date and time with the UTC offset, e.g. ``2026-11-22 19:09 +05:00``."""
    local = at.astimezone(tz)
    offset = local.strftime("%z")
    return local.strftime("%Y-%m-%d %H:%M ") + (f"{offset[:3]}:{offset[3:]}" if offset else "UTC")


def build(data: ReceiptData, lang: str = "en") -> Receipt:
    """The receipt for one redemption, in ``lang``."""
    lang = language(lang)
    t = labels(lang)
    blocks: list[Block] = []
    if data.logo:
        blocks.append(Logo(data.logo))
    if data.business_name:
        blocks.append(Line(data.business_name, size="large", bold=True, align="center"))
    for flag, key in ((data.sample, "sample"), (data.reprint, "reprint")):
        if flag:
            blocks.append(Line(f"*** {t[key]} ***", size="large", bold=True, align="center"))
    blocks += [Rule(), Line(t["title"], bold=True, align="center")]
    title = pick(data.reward_title, lang)
    if title:
        blocks.append(Line(title, size="large", bold=True, align="center"))
    value = reward_value(data.reward, lang)
    rows = [("value", value)] if value else []
    rows += [
        ("code", masked(data.masked_code)),
        ("time", format_time(data.at, data.tz)),
        ("clock", t.get(f"clock.{data.clock}", data.clock)),
        ("store", data.store),
        ("device", data.device),
    ]
    blocks += [Line(f"{t[key]}:", right=str(text)) for key, text in rows]
    blocks += [Rule(), QRCode(data.redemption_id),
               Line(t["redemption"], size="small", align="center"),
               Line(data.redemption_id, size="small", align="center")]
    footer = t["footer"] if data.footer is None else pick(data.footer, lang)
    if footer:
        blocks += [Rule()] + [Line(part, align="center") for part in footer.splitlines() if part.strip()]
    return Receipt(tuple(blocks), lang, data.redemption_id, data.reprint)
