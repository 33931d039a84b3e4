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


def parse_length(text: str, maximum: dt.timedelta | None = MAX_WINDOW) -> dt.timedelta | None:
    """'15m', '1h', '7d' -> the length; None for anything else (or longer than ``maximum``)."""
    found = _LENGTH.match(text or "") if isinstance(text, str) else None
    if not found:
        return None
    length = dt.timedelta(seconds=int(found.group(1)) * _UNIT_SECONDS[found.group(2)])
    return length if maximum is None or length <= maximum else None


def show(length: dt.timedelta) -> str:
    """A length as the largest whole unit that expresses it: 2d, 36h, 90m."""
    seconds = int(length.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


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


# -- Retention: how far back a window may reach --------------------------------------------------------------------
# A table whose producer keeps rows for a retention (schema.yaml ``retention``) no longer holds the rows of a window
# that starts before now - retention: the run would spend the budget on less than the window it names.


def reach(length: dt.timedelta, now: dt.datetime) -> dt.timedelta:
    """How long before ``now`` the last whole window of ``length`` starts (at least ``length``, less than twice)."""
    return since(bounds(length, now)[0], now)


def since(start: dt.datetime, now: dt.datetime) -> dt.timedelta:
    """How long before ``now`` a window starting at ``start`` starts."""
    return utc(now) - utc(start)


def utc(moment: dt.datetime) -> dt.datetime:
    """``moment`` as a naive UTC datetime (a naive one is read as UTC already)."""
    return moment.astimezone(dt.timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def longest_within(retention: dt.timedelta, now: dt.datetime, unit: str = "d") -> str | None:
    """The longest window, in ``unit`` or a smaller one, whose last whole window before ``now`` starts within
    ``retention``; None when not even a minute's does."""
    units = "dhm"[max(0, "dhm".find(unit)):] if unit in _UNIT_SECONDS else "dhm"
    for u in units:
        size = _UNIT_SECONDS[u]
        for count in range(min(int(retention.total_seconds()) // size, 99999), 0, -1):
            if reach(dt.timedelta(seconds=count * size), now) <= retention:
                return f"{count}{u}"
    return None


def scheduled_reach(length: dt.timedelta) -> dt.timedelta:
    """The furthest back a scheduled run's window can start: a tick (rate(N minutes), at any offset from the
    epoch's windows) takes the last whole window before it, which starts less than two windows earlier."""
    return 2 * length
