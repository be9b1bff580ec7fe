"""The redemption event: what the ledger records, the outbox sends, other kiosks apply
and HQ stores. One type for the whole sync contract (docs/sync.md, "An event");
``sync.protocol`` re-exports it and checks untrusted ones (``check_event``)."""

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Event:
    """A redemption or a void, as it travels (all values JSON-ready)."""

    id: str
    seq: int | None
    device: str | None
    store: str | None
    kind: str                 # "redeem" or "void"
    voids: str | None         # for a void: the redemption it undoes
    code_hash: str
    reward_id: str | None
    list_version: int | None
    at: str | None            # RFC 3339 UTC
    clock: str | None         # "synced", "rtc" or "unsynced"
    staff: str | None

    @classmethod
    def from_dict(cls, data: dict) -> "Event":
        """The event's fields of ``data`` (others are dropped, missing ones are None)."""
        return cls(**{name: data.get(name) for name in FIELDS})

    def to_dict(self) -> dict:
        # not dataclasses.asdict: it deep-copies every value (all plain here), which was
        # most of HQ's CPU per stored event
        return {name: getattr(self, name) for name in FIELDS}


FIELDS = tuple(f.name for f in fields(Event))
