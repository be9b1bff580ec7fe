"""HQ reference tools over MQTT: publish, collect, report, enroll, broker-user, remote."""

from sync.hq import collect, enroll, publish, remote, report


def register_all(sub) -> None:
    """Add the MQTT commands to ``kiosk-hq`` (called by :mod:`sync.hq_cli`)."""
    for module in (publish, collect, report, enroll, remote):
        module.register(sub)
