"""HQ tools over MQTT: publish, collect, report, enroll, broker-user, remote; serve (web + API)."""

from sync.hq import collect, enroll, publish, remote, report, serve


def register_all(sub) -> None:
    """Add the MQTT commands to ``kiosk-hq`` (called by :mod:`sync.hq_cli`)."""
    for module in (publish, collect, report, enroll, remote, serve):
        module.register(sub)
