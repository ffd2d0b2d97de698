"""Time, injected. Policies take ``now`` as an argument; handlers get it from the context's clock.

In Azure the clock is the system clock; under the local Functions host it is the emulator's virtual
clock, so hours of resizes and backoffs play out in seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO-8601 in UTC, the one format the app stores times in."""
    return moment.astimezone(UTC).isoformat()


def iso_z(moment: datetime | None) -> str | None:
    """ISO-8601 with "Z" for UTC, as the CLI's reports and status print times; None stays None."""
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
