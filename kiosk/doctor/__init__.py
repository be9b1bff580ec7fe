"""``kiosk doctor``: what is wrong with this kiosk, and how to fix it.

:func:`run_checks` returns a list of :class:`Check` (OK / WARN / FAIL, a message and
a fix hint) for the CLI and for the UI's staff menu. Each check lives with its kind:
:mod:`.data` (config, database, code list, outbox, sync agent), :mod:`.devices`
(camera, decoding, printer, GPIO), :mod:`.network` (broker), :mod:`.system` (disk,
clock, temperature, throttling). Hardware modules are imported inside the checks, so
importing this package touches nothing; one failing check never stops the others.

Messages and hints are written ``_("...")`` (:mod:`kiosk.i18n`): they come out in the
language given to :func:`run_checks` (``kiosk doctor --lang``, the configured language,
the staff menu's language). Check names stay English words (``--skip`` uses them).
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from kiosk.errors import ConfigError
from kiosk.i18n import _, current, say, speaking

OK, WARN, FAIL = "OK", "WARN", "FAIL"
STATUSES = (OK, WARN, FAIL)


class Check(NamedTuple):
    """One finding. A named tuple, so ``name, status, message, hint = check`` works too."""

    name: str
    status: str  # OK, WARN or FAIL
    message: str
    hint: str = ""

    def to_dict(self) -> dict:
        return self._asdict()


@dataclass
class Options:
    """How far the checks go. ``decode_wait_s`` is how long to look for a code (the
    test card); 0 means a short look that only warns when none is seen."""

    decode_wait_s: float = 0.0
    probe_printer: bool = True
    broker_timeout_s: float = 8.0
    thermal_path: Path = Path("/sys/class/thermal/thermal_zone0/temp")
    vcgencmd: str = "vcgencmd"
    journalctl: str = "journalctl"
    watchdog_bootstatus: Path = Path("/sys/class/watchdog/watchdog0/bootstatus")
    skip: set[str] = field(default_factory=set)


CHECK_GROUPS = ("database", "code_list", "outbox", "sync_agent", "broker", "camera_and_decode",
                "printer", "gpio", "disk", "clock", "temperature", "throttling", "last_boot")
SKIP_ALIASES = {"sync": "sync_agent", "camera": "camera_and_decode", "decode": "camera_and_decode"}


def skip_name(name: str) -> str:
    """The check group a ``--skip`` word names (printed names work too); ValueError if none."""
    group = SKIP_ALIASES.get(name, name)
    if group not in CHECK_GROUPS:
        known = ", ".join(sorted({*CHECK_GROUPS, *SKIP_ALIASES}))
        raise ValueError(f"no check named {name!r} (one of: {known})")
    return group


def run_checks(cfg, options: Options | None = None, *, config_error: "str | Exception | None" = None,
               lang: str | None = None, **kwargs) -> list["Check"]:
    """All checks for ``cfg`` (a loaded :class:`kiosk.config.Config`, or None when it
    could not be loaded: pass the loader's message as ``config_error`` and only the
    system checks run). ``kwargs`` set :class:`Options` fields.

    Inside the running UI the camera and printer are already open: call it there as
    ``run_checks(cfg, skip={"camera_and_decode"}, probe_printer=False)``.
    ``lang``: the language of the messages (default: the configured one, else the
    current :func:`kiosk.i18n.speaking` language). ``config_error``: a message or the
    loader's :class:`ConfigError` (then said in ``lang``).
    """
    if lang is None:
        lang = cfg.language if cfg is not None else current()
    with speaking(lang):
        return _run(cfg, options or Options(**kwargs), config_error)


def _run(cfg, options: Options, config_error) -> list["Check"]:
    from kiosk.doctor import data, devices, network, system

    ctx = data.Context(cfg, options)
    groups = [data.config_check(cfg, config_error)]
    try:
        if cfg is not None:
            partition = data.data_partition(cfg)
            groups.append(partition)
            ctx.data_ok = partition.status != FAIL  # else store checks could only crash
            groups += [data.database, data.code_list, data.outbox, data.sync_agent,
                       network.broker, devices.camera_and_decode, devices.printer,
                       devices.gpio]
        groups += [system.disk, system.clock, system.temperature, system.throttling,
                   system.last_boot]
        return _flatten(groups, ctx)
    finally:
        ctx.close()


def _flatten(groups, ctx) -> list[Check]:
    from kiosk.doctor.data import DataUnavailable

    results: list[Check] = []
    for item in groups:
        if isinstance(item, Check):
            results.append(item)
            continue
        name = item.__name__
        if name in ctx.options.skip:
            continue
        try:
            found = item(ctx)
        except DataUnavailable:  # data_partition's FAIL already says why
            continue
        except ConfigError as exc:  # a bad value in this check's section
            found = Check(name.replace("_and_decode", ""), FAIL, say(exc),
                          _("fix that key in kiosk.toml (docs/technician.md)"))
        except Exception as exc:  # a check that crashes is itself a finding
            found = Check(name.replace("_and_decode", ""), FAIL,
                          _("check crashed: {error}").format(error=repr(exc)),
                          _("report this with `kiosk doctor --json` output"))
        results.extend(found if isinstance(found, list) else [found] if found else [])
    return results


def worst(checks: list[Check]) -> str:
    return max((c.status for c in checks), key=STATUSES.index, default=OK)
