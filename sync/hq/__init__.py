"""HQ tools over MQTT: publish, collect, report, enroll, broker-user; serve (web + API)."""

from sync.hq import collect, enroll, publish, report, serve


def register_all(sub) -> None:
    """Add the MQTT commands to ``kiosk-hq`` (called by :mod:`sync.hq_cli`)."""
    for module in (publish, collect, report, enroll, serve):
        module.register(sub)
