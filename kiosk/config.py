"""The device configuration: one TOML file.

Found at ``kiosk --config PATH``, else ``$KIOSK_CONFIG``, else ``/etc/kiosk/kiosk.toml``.
Errors name the file, the key and what is wrong. Relative paths in the file are
relative to the file's folder. Each feature reads its own section through
:class:`Section`, so its checks and messages stay next to the code that uses them.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk.core import ids, keys, payload
from kiosk.errors import ConfigError
from kiosk.i18n import LANGUAGES, Msg  # config.LANGUAGES: the settings' choices

if TYPE_CHECKING:  # cryptography loads on the first signature check (kiosk.core.keys)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

DEFAULT_PATH = Path("/etc/kiosk/kiosk.toml")
# Every key the kiosk reads, per section: anything else is almost always a typo
# (``papermm``), reported as a warning so a newer config still loads on an older kiosk.
KNOWN_KEYS: dict[str, frozenset[str]] = {
    name: frozenset(keys.split()) for name, keys in {
        "device": "id store program data_dir language business_name name",
        "trust": "keys",
        "redeem": "void_window_minutes pattern",
        "clock": "synced_flag rtc_device",
        "camera": "source decoder repeat_window width height fps loop frame_timeout autofocus "
                  "lens_position exposure_time analogue_gain exposure_value full_width "
                  "full_height af_range af_speed metering exposure_constraint budget_ms "
                  "idle_budget_ms",
        "printer": "url paper_mm profile timeout_s text",
        "receipt": "footer logo timezone",
        "gpio": "green_led red_led rgb_led buzzer buzzer_type button bounce_ms active_high "
                "buzzer_active_high button_pull_up",
        "mqtt": "broker ca cert key username password_file keepalive heartbeat_seconds "
                "batch_size ack_timeout_seconds poll_seconds reconnect_max_seconds client_id "
                "peer_budget_per_hour",
        "ui": "fullscreen width height rotation pin_hash logo camera_position verdict_timeout "
              "refusal_timeout done_timeout staff_timeout language_timeout pin_lockout "
              "max_pin_tries sound_volume mute auto_confirm scanner_key_gap_ms",
        "audit": "keep_days",
    }.items()
}
MAX_VOID_WINDOW_MINUTES = 7 * 24 * 60  # a week; an undo is meant for minutes
_MISSING = object()


def locate(cli_path: str | os.PathLike | None = None) -> Path:
    if cli_path:
        return Path(cli_path)
    env = os.environ.get("KIOSK_CONFIG")
    return Path(env) if env else DEFAULT_PATH


def language_hint(path: Path) -> str:
    """``[device] language`` of the file at ``path`` when it can be read at all, else
    English: the language to explain a config that does not load (a bad key
    elsewhere, no trusted key) to the technician."""
    try:
        lang = tomllib.loads(Path(path).read_text(encoding="utf-8")).get("device", {}).get("language")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError, AttributeError):
        return "en"
    return lang if lang in LANGUAGES else "en"


class Section:
    """One ``[table]`` of the file, with typed getters that explain bad values."""

    def __init__(self, path: Path, name: str, data: dict):
        self.path, self.name, self.data = path, name, data

    def error(self, key: str, problem: str | Msg) -> ConfigError:
        """``PATH: [section] key: problem``; a :class:`Msg` problem is translated where shown."""
        return ConfigError(Msg("{path}: [{section}] {key}: {problem}", path=self.path, section=self.name,
                               key=key, problem=problem))

    def get(self, key: str, kind: type | tuple = str, default: Any = _MISSING) -> Any:
        if key not in self.data:
            if default is _MISSING:
                raise self.error(key, Msg("missing (required)"))
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in kinds):
            want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.error(key, Msg("must be {want}, not {kind} {value}", want=want,
                                          kind=type(value).__name__, value=repr(value)))
        return value

    def ident(self, key: str) -> str:
        value = self.get(key)
        if not ids.is_name(value):
            raise self.error(key, Msg("{value} must be {rule}", value=repr(value), rule=Msg(ids.NAME_RULE)))
        return value

    def path_value(self, key: str, default: Any = _MISSING) -> Path | None:
        value = self.get(key, str, default)
        if not isinstance(value, str):  # an absent optional path: the default
            return value
        try:
            p = Path(value).expanduser()
        except RuntimeError as exc:  # "~nosuchuser/..."
            raise self.error(key, Msg("{value}: {error}", value=repr(value), error=exc)) from None
        return p if p.is_absolute() else (self.path.parent / p)

    def choice(self, key: str, choices: tuple, default: Any = _MISSING) -> Any:
        value = self.get(key, type(choices[0]), default)
        if value not in choices:
            raise self.error(key, Msg("{value} is not one of {choices}", value=repr(value),
                                          choices=", ".join(map(str, choices))))
        return value


@dataclass
class Config:
    path: Path
    device_id: str
    store: str
    program: str
    data_dir: Path
    language: str
    business_name: str
    trusted_keys: dict[str, Ed25519PublicKey]
    void_window: timedelta
    pattern: re.Pattern[str] | None
    raw: dict = field(repr=False, default_factory=dict)
    warnings: list = field(default_factory=list)  # Msg: str() English, say() translated
    name: str = ""  # [device] name: how staff and technicians call this counter

    def section(self, name: str) -> Section:
        """Any section (``camera``, ``printer``, ``mqtt`` ...); empty if absent."""
        value = self.raw.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(Msg("{path}: [{section}] must be a table", path=self.path, section=name))
        return Section(self.path, name, value)


def _trusted_keys(section: Section) -> dict[str, Ed25519PublicKey]:
    result = {}
    for key_id in section.data:
        pem = section.path_value(key_id)
        try:
            result[key_id] = keys.read_public(pem)
        except FileNotFoundError:
            raise section.error(key_id, Msg("public key file {file} does not exist", file=pem)) from None
        except OSError as exc:  # a directory, no permission, an I/O error
            raise section.error(key_id, Msg("cannot read public key file {file}: {error}", file=pem,
                                            error=exc.strerror or exc)) from None
        except (ValueError, TypeError) as exc:
            raise section.error(key_id, Msg("{file} is not an Ed25519 public key PEM ({error})", file=pem,
                                            error=exc)) from None
    return result


def _did_you_mean(word: str, choices) -> Msg | str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return Msg("; did you mean {name}?", name=repr(close[0])) if close else ""


def unknown_keys(path: Path, raw: dict) -> list[Msg]:
    """A warning for each section or key the kiosk does not read (typos, mostly);
    ``str()`` of one is English, ``kiosk.i18n.say`` translates it."""
    found = []
    for name, value in raw.items():
        if name not in KNOWN_KEYS:
            found.append(Msg("{path}: unknown section [{section}] is ignored{hint}", path=path,
                             section=name, hint=_did_you_mean(name, KNOWN_KEYS)))
        elif isinstance(value, dict):
            found += [Msg("{path}: [{section}] unknown key {key} is ignored{hint}", path=path, section=name,
                          key=repr(key), hint=_did_you_mean(key, KNOWN_KEYS[name]))
                      for key in value if key not in KNOWN_KEYS[name]]
    return found


def load(path: Path) -> Config:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ConfigError(Msg("{path}: not valid TOML: nested too deeply", path=path)) from None
    except FileNotFoundError:
        raise ConfigError(Msg("{path}: config file not found (set --config or KIOSK_CONFIG)", path=path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(Msg("{path}: cannot read config: {error}", path=path, error=exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(Msg("{path}: not valid TOML: {error}", path=path, error=exc)) from None
    for name in ("device", "trust", "redeem"):
        if not isinstance(raw.get(name, {}), dict):
            raise ConfigError(Msg("{path}: [{section}] must be a table", path=path, section=name))
    device = Section(path, "device", raw.get("device", {}))
    trust = raw.get("trust", {}).get("keys", {})
    if not isinstance(trust, dict):
        raise ConfigError(Msg("{path}: [trust.keys] must be a table of key id = PEM path", path=path))
    redeem = Section(path, "redeem", raw.get("redeem", {}))
    minutes = redeem.get("void_window_minutes", (int, float), 10)
    if not 0 <= minutes <= MAX_VOID_WINDOW_MINUTES:  # also refuses nan and inf
        raise redeem.error("void_window_minutes", Msg("must be a number of minutes from 0 to {most}, not {value}",
                                                      most=MAX_VOID_WINDOW_MINUTES, value=repr(minutes)))
    try:
        pattern = payload.compile_pattern(redeem.get("pattern", str, ""))
    except (re.error, ValueError) as exc:
        raise redeem.error("pattern", Msg("bad regular expression: {error}", error=exc)) from None
    return Config(
        path=path,
        device_id=device.ident("id"),
        store=device.ident("store"),
        program=device.ident("program"),
        data_dir=device.path_value("data_dir"),
        language=device.choice("language", LANGUAGES, "en"),
        business_name=device.get("business_name", str, ""),
        trusted_keys=_trusted_keys(Section(path, "trust.keys", trust)),
        void_window=timedelta(minutes=minutes),
        pattern=pattern,
        raw=raw,
        warnings=unknown_keys(path, raw),
        name=device.get("name", str, ""),
    )
