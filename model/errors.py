"""The one error type for bad input: each line names the config key or file and what would pass.

The Pulumi program turns it into pulumi.RunError (one readable message, no
traceback, __main__.py); the local tools print it after "error:" and exit 2.
"""

from __future__ import annotations

PROJECT = "cleanrooms-collab"


def full_key(key: str) -> str:
    return key if ":" in key else f"{PROJECT}:{key}"


class ConfigError(ValueError):
    """Bad stack config, data file or template, found before any resource is declared.

    ``key`` is the config key the problem is in (without the project prefix),
    or None when ``message`` itself starts with the file it is about.
    ``more`` holds further problems found in the same pass, one line each.
    """

    def __init__(self, key: str | None, message: str, more: tuple["ConfigError", ...] = ()):
        self.key = key
        self.message = message
        self.more = tuple(more)
        line = f"config '{full_key(key)}': {message}" if key else message
        super().__init__("\n".join([line, *(str(m) for m in self.more)]))
