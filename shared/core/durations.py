"""Durations, in the app's two spellings: ISO 8601 on the wire, and the short form people write.

- ISO 8601 (``PT15M``, ``P1DT2H``, ``P1W``) is what Batch reads and answers for ``resizeTimeout``. Parsing goes
  through ``isodate``; months and years are refused, because a timeout or a wait has a fixed length and a month
  does not. Formatting has one shape: days, then hours, minutes, seconds, nothing empty (26 hours is ``P1DT2H``,
  as Batch answers it).
- The short form (``30m``, ``6h``, ``1d12h``, and ``45s`` where seconds make sense) is what the families
  configuration and the scenarios use; ``isodate`` does not read it, so it has its own small parser here.

The emulator keeps its own copy on purpose: it is the oracle the app is judged by, so the two share no helper.
"""

from __future__ import annotations

import re
from datetime import timedelta

_SHORT = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
SHORT_EXAMPLES = '"30m", "2h", "7d" or "1d12h"'


def parse_iso_duration(text: str) -> timedelta:
    """``PT15M``, ``PT15M00S`` (azure-mgmt-batch), ``P1DT2H``, ``P1W``, any case -> timedelta. ValueError otherwise.

    Refused: months and years (no fixed length), negative durations, and the empty ``P``/``PT``/``P1DT``.
    """
    import isodate  # arrives with the SDK and is pinned in requirements.in; lazy like the SDK modules

    value = text.strip().upper() if isinstance(text, str) else ""
    if not value.startswith("P") or value in {"P", "PT"} or value.endswith("T"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as 'PT15M' or 'P1DT2H'")
    try:
        parsed = isodate.parse_duration(value)
    except (isodate.ISO8601Error, ValueError) as exc:
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as 'PT15M' or 'P1DT2H'") from exc
    if not isinstance(parsed, timedelta):
        raise ValueError(f"{text!r} counts months or years, which have no fixed length: write days or hours, "
                         "e.g. 'P30D' instead of 'P1M'")
    return parsed


def format_iso_duration(delta: timedelta) -> str:
    """timedelta -> ``PT20M``, ``PT1H5M``, ``P1DT2H``, ``PT0.5S``, ``PT0S``: the one ISO 8601 shape the app writes."""
    if delta < timedelta(0):
        raise ValueError(f"{delta} is negative; a duration on the wire is never negative")
    days, rest = delta.days, delta.seconds
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    time_part = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    if delta.microseconds:
        time_part += f"{seconds}.{delta.microseconds:06d}".rstrip("0") + "S"
    elif seconds:
        time_part += f"{seconds}S"
    text = "P" + (f"{days}D" if days else "") + (f"T{time_part}" if time_part else "")
    return text if text != "P" else "PT0S"


def parse_short(text: str, *, seconds: bool = True) -> timedelta:
    """``30m``, ``2h``, ``1d12h``, ``45s`` (unless ``seconds`` is False) -> timedelta. ValueError otherwise."""
    value = text.strip().lower() if isinstance(text, str) else ""
    m = _SHORT.match(value)
    if not value or m is None or (m["s"] is not None and not seconds):
        raise ValueError(f"{text!r} is not a duration such as {SHORT_EXAMPLES}")
    return timedelta(days=int(m["d"] or 0), hours=int(m["h"] or 0), minutes=int(m["m"] or 0), seconds=int(m["s"] or 0))


def format_short(delta: timedelta) -> str:
    """timedelta -> ``1d2h``, ``1h30m``, ``45s``, ``0m``: the short form, whole seconds."""
    total = int(delta.total_seconds())
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")) if n) or "0m"
