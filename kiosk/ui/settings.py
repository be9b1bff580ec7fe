"""The ``[ui]`` section of kiosk.toml, read and checked in one place.

Keys (all optional): ``fullscreen`` (bool, false), ``width``/``height`` (window size,
800x480), ``rotation`` (0/90/180/270), ``pin_hash`` (from ``kiosk pin-hash``),
``logo`` (image path), ``camera_position`` (top/bottom), ``verdict_timeout``, ``refusal_timeout``, ``done_timeout``,
``staff_timeout``, ``language_timeout`` (seconds), ``max_pin_tries``,
``pin_lockout`` (seconds), ``sound_volume`` (0..1, 0.8), ``mute`` (bool, false) and
``auto_confirm`` (bool, false: a ready verdict nobody confirmed is confirmed by itself
when ``verdict_timeout`` runs out, instead of being dropped and recorded as
unconfirmed). From ``[device]``: ``language``, ``business_name`` and ``name`` (this
counter's friendly name, "Front counter", shown instead of its id).
"""

from dataclasses import dataclass, field
from pathlib import Path

from kiosk.i18n import Msg
from kiosk.ui import pin


@dataclass
class UiSettings:
    fullscreen: bool = False
    width: int = 800
    height: int = 480
    rotation: int = 0
    pin_hash: str = ""
    logo: Path | None = None
    camera_position: str = "top"
    business_name: str = ""
    device_name: str = ""
    language: str = "en"
    verdict_timeout: float = 30.0
    refusal_timeout: float = 10.0
    done_timeout: float = 6.0
    staff_timeout: float = 60.0
    language_timeout: float = 45.0
    max_pin_tries: int = 5
    pin_lockout: float = 30.0
    auto_confirm: bool = False
    sound_volume: float = 0.8
    mute: bool = False
    scanner_key_gap: float = 0.1  # s: a USB scanner's keystrokes come closer than this
    extra: dict = field(default_factory=dict)


_TIMEOUTS = ("verdict_timeout", "refusal_timeout", "done_timeout", "staff_timeout",
             "language_timeout", "pin_lockout")


def from_config(cfg) -> UiSettings:
    """Settings from a loaded Config; bad values raise ConfigError naming the key."""
    ui = cfg.section("ui")
    s = UiSettings(business_name=cfg.business_name, language=cfg.language,
                   device_name=cfg.section("device").get("name", str, "").strip())
    s.fullscreen = ui.get("fullscreen", bool, s.fullscreen)
    for key in ("width", "height"):
        value = ui.get(key, int, getattr(s, key))
        if not 240 <= value <= 4096:
            raise ui.error(key, Msg("{value} is not a sensible window size in pixels", value=value))
        setattr(s, key, value)
    s.rotation = ui.choice("rotation", (0, 90, 180, 270), 0)
    s.pin_hash = ui.get("pin_hash", str, "")
    if s.pin_hash:
        try:
            pin.parse_hash(s.pin_hash)
        except ValueError as exc:
            raise ui.error("pin_hash", exc) from None
    s.logo = ui.path_value("logo", None)
    s.camera_position = ui.choice("camera_position", ("top", "bottom"), "top")
    for key in _TIMEOUTS:
        value = ui.get(key, (int, float), getattr(s, key))
        if value <= 0:
            raise ui.error(key, Msg("must be a positive number of seconds"))
        setattr(s, key, float(value))
    s.max_pin_tries = ui.get("max_pin_tries", int, s.max_pin_tries)
    s.auto_confirm = ui.get("auto_confirm", bool, s.auto_confirm)
    s.sound_volume = float(ui.get("sound_volume", (int, float), s.sound_volume))
    if not 0 <= s.sound_volume <= 1:
        raise ui.error("sound_volume", Msg("{value} is not between 0 and 1", value=s.sound_volume))
    s.mute = ui.get("mute", bool, s.mute)
    gap_ms = ui.get("scanner_key_gap_ms", (int, float), s.scanner_key_gap * 1000)
    if not 10 <= gap_ms <= 1000:
        raise ui.error("scanner_key_gap_ms", Msg("{value} is not between 10 and 1000 ms", value=gap_ms))
    s.scanner_key_gap = gap_ms / 1000
    return s
