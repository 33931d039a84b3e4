"""The one error type for bad input, so every message names the config key."""

PROJECT = "cleanrooms-collab"


class ConfigError(ValueError):
    """Bad stack config or data, found before any resource is declared."""

    def __init__(self, key: str, message: str):
        self.key = key
        full_key = key if ":" in key else f"{PROJECT}:{key}"
        super().__init__(f"config '{full_key}': {message}")
