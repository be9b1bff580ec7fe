"""RFC 3339 UTC timestamps, the only time format on the wire and in the database."""

from datetime import UTC, datetime


def parse(text: str) -> datetime:
    """Parse an RFC 3339 timestamp; naive values are taken as UTC."""
    if not isinstance(text, str):
        raise ValueError(f"not a timestamp: {text!r}")
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_optional(text: str | None) -> datetime | None:
    """:func:`parse`, with None or an empty string meaning no time."""
    return None if text in (None, "") else parse(text)


def format(value: datetime) -> str:  # noqa: A001 - mirrors datetime.isoformat
    """Format as ``2026-11-22T19:09:45.123Z`` (UTC, millisecond precision)."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def to_epoch(value: datetime | None) -> int | None:
    """Whole Unix seconds (how the codes table stores validity), None for None."""
    return None if value is None else int(value.timestamp())


def from_epoch(value: int | float | None) -> datetime | None:
    """The UTC datetime of Unix seconds, None for None."""
    return None if value is None else datetime.fromtimestamp(value, UTC)
