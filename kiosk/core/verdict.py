"""The verdict rules: is this code redeemable here and now, and if not, why not."""

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Verdict(StrEnum):
    READY = "ready"
    REDEEMED = "redeemed"
    ALREADY_REDEEMED = "already_redeemed"
    EXHAUSTED = "exhausted"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    REVOKED = "revoked"
    UNKNOWN = "unknown"
    WRONG_STORE = "wrong_store"
    NOT_A_CODE = "not_a_code"
    NO_LIST = "no_list"

    @property
    def ok(self) -> bool:
        return self in (Verdict.READY, Verdict.REDEEMED)


@dataclass(frozen=True)
class CodeRow:
    """One code of the list, as stored."""

    reward_id: str | None
    valid_from: datetime | None
    valid_until: datetime | None
    max_uses: int
    stores: tuple[str, ...] | None
    revoked: bool


def decide(row: CodeRow | None, uses: int, now: datetime, store: str) -> Verdict:
    """Pure decision for a code that parsed; ``uses`` counts unvoided redemptions."""
    if row is None:
        return Verdict.UNKNOWN
    if row.revoked:
        return Verdict.REVOKED
    if row.stores and store not in row.stores:
        return Verdict.WRONG_STORE
    if row.valid_from is not None and now < row.valid_from:
        return Verdict.NOT_YET_VALID
    if row.valid_until is not None and now >= row.valid_until:
        return Verdict.EXPIRED
    if uses >= row.max_uses:
        return Verdict.ALREADY_REDEEMED if row.max_uses == 1 else Verdict.EXHAUSTED
    return Verdict.READY
