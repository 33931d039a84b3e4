"""Time windows of a template over data that keeps arriving: the last whole window of a length before a moment.

Windows are aligned on the Unix epoch in UTC, so a run every hour over the last hour covers each hour once and
two runs within one hour cover the same rows. Pure standard library: queryrunner (run --window) and the
scheduled-query function (lambdas/scheduled_query.py, packaged with this file) compute them the same way.
"""
from __future__ import annotations

import datetime as dt
import re

WINDOW = ("window_start", "window_end")
_LENGTH = re.compile(r"^([1-9][0-9]{0,4})([mhd])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}
MAX_WINDOW = dt.timedelta(days=366)
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


def parse_length(text: str) -> dt.timedelta | None:
    """'15m', '1h', '7d' -> the length; None for anything else (or longer than MAX_WINDOW)."""
    found = _LENGTH.match(text or "")
    if not found:
        return None
    length = dt.timedelta(seconds=int(found.group(1)) * _UNIT_SECONDS[found.group(2)])
    return length if length <= MAX_WINDOW else None


def bounds(length: dt.timedelta, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of the last whole window of ``length`` before ``now`` (naive UTC datetimes)."""
    seconds = int(length.total_seconds())
    epoch = int(now.astimezone(dt.timezone.utc).timestamp()) if now.tzinfo else int(
        now.replace(tzinfo=dt.timezone.utc).timestamp())
    end = dt.datetime.fromtimestamp(epoch - epoch % seconds, dt.timezone.utc).replace(tzinfo=None)
    return end - length, end


def parameters(length: dt.timedelta, now: dt.datetime) -> dict[str, str]:
    """The template's window parameters as TIMESTAMP text."""
    start, end = bounds(length, now)
    return {"window_start": start.strftime(TIMESTAMP_FORMAT), "window_end": end.strftime(TIMESTAMP_FORMAT)}
