"""The stacks present, for CI and the policy pack: discovered from the Pulumi.<stack>.yaml files.

    python -m offline.stacks                        # the stacks in deploy order (owner first), one per line
    python -m offline.stacks --matrix               # CI's preview matrix, as JSON (.github/workflows/policy.yml)
    python -m offline.stacks --policy-config        # write policy/config/<stack>.json for every joining stack
    python -m offline.stacks --policy-config --check  # exit 1 if those files differ from what this writes

Nothing lists the organizations: a third stack file is a third CI preview and a third
policy config. A stack that owns the collaboration needs no policy config: the pack reads
the members from its Collaboration resource. Every other stack's preview gets
``policy/config/<stack>.json``, with the member accounts taken from the *owner's* stack
file (the creator and whom it invites), so the pack's members check
(cleanrooms-results-to-members-only) compares a joiner's receivers and analysis providers
with the owner's invitation list, not with the joiner's own view of it.

Exit status: 0, 1 for --check when a file differs or is missing, 2 for an error (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from model.stackfiles import load_stack_config, project_name, project_values
from offline.harness import ROOT
from offline.plan import PlanError, discover, fail

CONFIG_DIR = Path("policy") / "config"
MEMBERS_POLICY = "cleanrooms-results-to-members-only"


def role_secret(stack: str) -> str:
    """The repository secret with the stack's read-only preview role: org-a -> ORG_A_PREVIEW_ROLE_ARN."""
    return "".join(c if c.isalnum() else "_" for c in stack).upper() + "_PREVIEW_ROLE_ARN"


def _values(stack: str, root: Path) -> dict:
    return project_values(load_stack_config(stack, root), project_name())


def policy_configs(root: Path = ROOT) -> dict[str, str]:
    """{relative path: text} of the policy config of each stack that does not own the collaboration."""
    stacks = discover(root)
    owner = _values(stacks[0], root)
    accounts = sorted({str(owner["accountId"]), *(str(p["accountId"]) for p in owner.get("partners") or [])})
    return {(CONFIG_DIR / f"{stack}.json").as_posix():
            json.dumps({MEMBERS_POLICY: {"memberAccountIds": accounts}}, indent=2) + "\n"
            for stack in stacks[1:]}


def matrix(root: Path = ROOT) -> list[dict[str, str]]:
    """One preview per stack: its name, the secret with its preview role, its policy config ("" for the owner)."""
    configs = policy_configs(root)
    return [{"stack": stack, "role_secret": role_secret(stack),
             "policy_config": next((path for path in configs if path.endswith(f"/{stack}.json")), "")}
            for stack in discover(root)]


def check(files: dict[str, str], root: Path = ROOT) -> list[str]:
    """What differs from the generated files: missing, different, or a config of a stack that is gone."""
    problems = [f"{path} is missing" if not (root / path).is_file() else f"{path} differs"
                for path, text in sorted(files.items())
                if not (root / path).is_file() or (root / path).read_text(encoding="utf-8") != text]
    problems += [f"{path.relative_to(root).as_posix()} has no stack (no {path.stem} among the stack files, or it "
                 "owns the collaboration)" for path in sorted((root / CONFIG_DIR).glob("*.json"))
                 if path.relative_to(root).as_posix() not in files]
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m offline.stacks",
                                description="The stacks of the Pulumi.<stack>.yaml files present, for CI and the "
                                            "policy pack's config.")
    p.add_argument("--stacks-dir", metavar="DIR", type=Path, default=ROOT,
                   help="the folder of the stack files (default: the project's); --policy-config writes there")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--matrix", action="store_true", help="print CI's preview matrix as one line of JSON")
    what.add_argument("--policy-config", action="store_true",
                      help="write policy/config/<stack>.json for every stack that joins the collaboration")
    p.add_argument("--check", action="store_true", help="with --policy-config: compare, do not write")
    args = p.parse_args(argv)
    root = args.stacks_dir if args.stacks_dir.is_absolute() else Path.cwd() / args.stacks_dir
    if args.check and not args.policy_config:
        return fail("--check goes with --policy-config")
    try:
        if not root.is_dir():
            raise PlanError(f"--stacks-dir {args.stacks_dir}: not a folder")
        if args.matrix:
            print(json.dumps(matrix(root), separators=(",", ":")))
            return 0
        if not args.policy_config:
            print("\n".join(discover(root)))
            return 0
        files = policy_configs(root)
    except PlanError as exc:
        return fail(str(exc))
    if args.check:
        problems = check(files, root)
        if problems:
            print("; ".join(problems) + " -- run: venv/bin/python -m offline.stacks --policy-config",
                  file=sys.stderr)
            return 1
        print(f"{len(files)} policy config file(s) match the stack files")
        return 0
    try:
        (root / CONFIG_DIR).mkdir(parents=True, exist_ok=True)
        for path, text in sorted(files.items()):
            (root / path).write_text(text, encoding="utf-8")
            print(f"{path}: members {json.loads(text)[MEMBERS_POLICY]['memberAccountIds']}")
    except OSError as exc:
        return fail(f"cannot write {exc.filename}: {exc.strerror}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
