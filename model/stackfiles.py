"""Reading Pulumi.yaml and Pulumi.<stack>.yaml without the Pulumi CLI.

The CLI hands the program its config as the project's declared defaults
overlaid by the stack file's values; this module does the same from the files
themselves, for the tools that run without the CLI (the local clean room, the
query runner's --local mode, the tests). Secrets (``secure:`` values) cannot be
read without the CLI and are refused by name.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from model.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILE = "Pulumi.yaml"


def project_name(root: Path = ROOT) -> str:
    """The project's name, from the one Pulumi.yaml (``root`` is accepted for callers that pass a stacks folder)."""
    return str(_read_yaml(ROOT / PROJECT_FILE).get("name") or "")


def stack_names(root: Path = ROOT) -> list[str]:
    """Stacks that have a Pulumi.<stack>.yaml in ``root``: the project folder, or another stacks folder
    (examples/three-orgs/; `pulumi up --config-file` deploys one of its files)."""
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in Path(root).glob("Pulumi.*.yaml"))


def stack_file(stack: str, root: Path = ROOT) -> Path:
    return Path(root) / f"Pulumi.{stack}.yaml"


def stack_from_reference(reference: str) -> str:
    """'organization/<project>/<stack>' -> '<stack>' (the stack file's name)."""
    return reference.rsplit("/", 1)[-1]


def load_stack_config(stack: str, root: Path = ROOT) -> dict[str, Any]:
    """Config as the CLI would give it: full keys ('<project>:<key>') to values.

    The project's declared defaults come from the project's Pulumi.yaml, the values from
    ``root``'s Pulumi.<stack>.yaml (``root`` is the project folder unless a tool's
    ``--stacks-dir`` names another one).
    """
    root = Path(root)
    project = _read_yaml(ROOT / PROJECT_FILE)
    name = project.get("name")
    config: dict[str, Any] = {}
    for key, decl in (project.get("config") or {}).items():
        if isinstance(decl, dict) and "default" in decl:
            config[key if ":" in key else f"{name}:{key}"] = decl["default"]
    path = stack_file(stack, root)
    if not path.is_file():
        raise ConfigError(None, f"no stack file {path.name} in {root}; stacks here: {stack_names(root)}")
    for key, value in (_read_yaml(path).get("config") or {}).items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            raise ConfigError(key, f"is a secret in {path.name}; the local tools cannot decrypt it "
                              "(run through `pulumi` or give the value in plain text)")
        config[key if ":" in key else f"{name}:{key}"] = value
    return config


def project_values(config: dict[str, Any], project: str) -> dict[str, Any]:
    """One project's keys without the prefix, the shape model.config.load_settings reads."""
    prefix = f"{project}:"
    return {key[len(prefix):]: value for key, value in config.items() if key.startswith(prefix)}


# libyaml's loader when PyYAML was built with it (about ten times faster), else the pure-Python one.
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path):
    """Parse one YAML file safely; cached by path and modification time (stack files are read often)."""
    path = Path(path)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        stamp = None
    return copy.deepcopy(_parse(path, stamp))


@lru_cache(maxsize=256)
def _parse(path: Path, stamp: int | None):
    return yaml.load(path.read_text(encoding="utf-8"), Loader=SafeLoader)


def _read_yaml(path: Path) -> dict:
    try:
        data = read_yaml(path) or {}
    except OSError as exc:
        raise ConfigError(None, f"{path}: cannot read it: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path.name}:{mark.line + 1}" if mark else path.name
        raise ConfigError(None, f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(None, f"{path.name}: must be a YAML mapping")
    return data
