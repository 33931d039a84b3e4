"""The reviewers' plan: what each stack would declare, without the Pulumi CLI or AWS.

    python -m offline.plan                          # both stacks after the final round, as a tree
    python -m offline.plan --stack org-a --round 1  # org A before org B has deployed: what is pending
    python -m offline.plan --json --save plan.json  # machine-readable, deterministic
    python -m offline.plan --diff plan.json         # added / removed / changed against a saved plan

The program (``__main__.py``) runs from the real stack files under the test
suite's mocks (offline.harness), through the same deploy rounds as the tests'
bootstrap: org-a, org-b, org-a, then one more round of each, every round fed
the other stack's latest exports through its stack reference. Ids come from the
mocked cloud and are deterministic, so two runs give the same plan.

Exit status: 0 (also when --diff finds differences; it prints a summary line),
2 for a config error in the stack files, an unreadable --diff file or an
unwritable --save file, each reported as one ``error: ...`` line on stderr.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from model.errors import ConfigError
from model.stackfiles import load_stack_config, project_name, project_values, stack_names
from offline.harness import ROOT, Registered, Run, run_stack, stack_ref

PLAN_FORMAT = 1
# Exports a reviewer looks at; the JSON plan keeps these, the text prints those present.
EXPORTS = ("collaboration_id", "membership_id", "partners_joined", "pending_templates", "pending_jobs")

CR = "aws-native:cleanrooms:"
_CUSTOM = "analysisRules.0.policy.v1.custom"
_TRUST = "assumeRolePolicy.Statement.*"
# The inputs that matter, per resource type: (label, dotted path). ``*`` maps over
# a list. JSON-encoded inputs (IAM documents, provider settings) are decoded first.
IMPORTANT: dict[str, tuple[tuple[str, str], ...]] = {
    "pulumi:providers:aws": (("accounts", "allowedAccountIds"), ("region", "region"), ("profile", "profile"),
                             ("assumeRole", "assumeRoles.*.roleArn")),
    "pulumi:providers:aws-native": (("accounts", "allowedAccountIds"), ("region", "region"),
                                    ("profile", "profile"), ("assumeRole", "assumeRole.roleArn")),
    CR + "Collaboration": (("name", "name"), ("engine", "analyticsEngine"),
                           ("creatorAbilities", "creatorMemberAbilities"),
                           ("creatorPays", "creatorPaymentConfiguration.queryCompute.isResponsible"),
                           ("members", "members.*.accountId"), ("memberAbilities", "members.*.memberAbilities"),
                           ("queryLogs", "queryLogStatus"), ("c3r", "dataEncryptionMetadata")),
    CR + "Membership": (("collaboration", "collaborationIdentifier"),
                        ("pays", "paymentConfiguration.queryCompute.isResponsible"),
                        ("results", "defaultResultConfiguration.outputConfiguration.s3.bucket"),
                        ("format", "defaultResultConfiguration.outputConfiguration.s3.resultFormat"),
                        ("queryLogs", "queryLogStatus")),
    CR + "PrivacyBudgetTemplate": (("membership", "membershipIdentifier"), ("type", "privacyBudgetType"),
                                   ("epsilon", "parameters.epsilon"),
                                   ("noisePerQuery", "parameters.usersNoisePerQuery"),
                                   ("autoRefresh", "autoRefresh")),
    CR + "ConfiguredTable": (("name", "name"), ("rule", "analysisRules.*.type"),
                             ("analyses", f"{_CUSTOM}.allowedAnalyses"),
                             ("providers", f"{_CUSTOM}.allowedAnalysisProviders"),
                             ("dpColumns", f"{_CUSTOM}.differentialPrivacy.columns.*.name"),
                             ("threshold", f"{_CUSTOM}.aggregationThresholds.*.minimumIdentityCount"),
                             ("thresholdColumns", f"{_CUSTOM}.aggregationThresholds.*.identityColumns"),
                             ("disallowedOutput", f"{_CUSTOM}.disallowedOutputColumns"),
                             ("glueTable", "tableReference.glue.tableName")),
    CR + "ConfiguredTableAssociation": (
        ("name", "name"), ("membership", "membershipIdentifier"), ("table", "configuredTableIdentifier"),
        ("receivers", "configuredTableAssociationAnalysisRules.*.policy.v1.custom.allowedResultReceivers"),
        ("role", "roleArn")),
    CR + "AnalysisTemplate": (("name", "name"), ("membership", "membershipIdentifier"), ("format", "format"),
                              ("parameters", "analysisParameters.*.name")),
    "aws:iam/role:Role": (("name", "name"), ("trusts", f"{_TRUST}.Principal.Service"),
                          ("forArns", f"{_TRUST}.Condition.ForAnyValue:ArnEquals.aws:SourceArn"),
                          ("forArnsLike", f"{_TRUST}.Condition.ArnLike.aws:SourceArn"),
                          ("forQueryRunner", f"{_TRUST}.Condition.StringLike.sts:ExternalId"),
                          ("forAccounts", f"{_TRUST}.Condition.StringEquals.aws:SourceAccount")),
    "aws:iam/rolePolicy:RolePolicy": (("statements", "policy.Statement.*.Sid"),),
    "aws:s3/bucket:Bucket": (("bucket", "bucket"), ("forceDestroy", "forceDestroy")),
    "aws:s3/bucketPolicy:BucketPolicy": (("statements", "policy.Statement.*.Sid"),),
    "aws:s3/bucketVersioning:BucketVersioning": (("status", "versioningConfiguration.status"),),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        ("sse", "rules.*.applyServerSideEncryptionByDefault.sseAlgorithm"),
        ("key", "rules.*.applyServerSideEncryptionByDefault.kmsMasterKeyId")),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": (("blockPublicPolicy", "blockPublicPolicy"),
                                                               ("restrictPublicBuckets", "restrictPublicBuckets")),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": (("ownership", "rule.objectOwnership"),),
    "aws:s3/bucketObjectv2:BucketObjectv2": (("key", "key"), ("source", "source.fileAsset")),
    "aws:kms/key:Key": (("rotation", "enableKeyRotation"), ("deletionWindowDays", "deletionWindowInDays")),
    "aws:kms/alias:Alias": (("name", "name"),),
    "aws:glue/catalogDatabase:CatalogDatabase": (("name", "name"),),
    "aws:glue/catalogTable:CatalogTable": (("name", "name"), ("database", "databaseName"),
                                           ("columns", "storageDescriptor.columns.*.name")),
    "aws:quicksight/dataSource:DataSource": (("id", "dataSourceId"), ("type", "type")),
    "aws:quicksight/dataSet:DataSet": (("id", "dataSetId"), ("importMode", "importMode")),
    "aws-native:quicksight:Dashboard": (("id", "dashboardId"),),
}
# Types not in the table: the first of these inputs that is set.
FALLBACK = (("name", "name"), ("bucket", "bucket"))


class PlanError(Exception):
    """A problem with the command line's files, reported as one line (exit 2)."""


# --------------------------------------------------------------------------
# Rounds


@dataclass
class Rounds:
    """The `pulumi up` order that makes a set of stacks converge, found by running them.

    Every stack needs ids from others (the collaboration from its owner, memberships and
    table associations from each member, template ARNs from the analyst), so which stack
    must run when depends on who owns, produces and reads what. Rather than a second model
    of those dependencies, the real program runs: stacks in turn (the owner first, then the
    others by name, round and round), each fed every other stack's latest exports through
    its stack reference, until every stack has run once more without a change. A run that
    changed nothing (the same resources, inputs, options and exports as that stack's previous
    run) is dropped from the order, so ``order`` is what a user runs; ``check`` are the runs
    after it, one per stack, each of which changed nothing.
    """

    stacks: tuple[str, ...]
    order: tuple[tuple[int, str], ...]
    """The rounds a user runs: (round number from 1, stack)."""
    check: tuple[tuple[int, str], ...]
    """One more run of each stack after ``order``, numbered on: each changed nothing."""
    runs: dict[int, Run]
    changes: dict[int, list[str]] = field(default_factory=dict)
    """Round number -> what that round declares or changes (``+Type name``, ``~Type name``, ``~exports``)."""

    @property
    def all(self) -> tuple[tuple[int, str], ...]:
        return self.order + self.check

    @property
    def final(self) -> int:
        return self.all[-1][0]

    def latest(self, stack: str, upto: int | None = None) -> tuple[int, Run] | None:
        """The stack's last run at or before round ``upto`` (default: the last)."""
        found = [(n, self.runs[n]) for n, s in self.all if s == stack and (upto is None or n <= upto)]
        return found[-1] if found else None


def discover(root: Path = ROOT) -> tuple[str, ...]:
    """The stacks of ``root`` (its Pulumi.<stack>.yaml files) in deploy order: the owner first.

    Refused with one line naming the files: no stack files, none or several owners, an
    organization or account id in two files (each organization is one stack in its own account).
    """
    names = stack_names(root)
    if not names:
        raise PlanError(f"no Pulumi.<stack>.yaml in {root}" + (" (--stacks-dir)" if root != ROOT else ""))
    project = project_name()
    seen: dict[str, dict[str, str]] = {"organization": {}, "accountId": {}}
    owners = []
    for stack in names:
        config = project_values(load_stack_config(stack, root), project)
        for key in seen:
            value = str(config.get(key) or "")
            if value and value in seen[key]:
                raise PlanError(f"Pulumi.{seen[key][value]}.yaml and Pulumi.{stack}.yaml both have {key}: {value}; "
                                "each organization is one stack in its own AWS account")
            seen[key][value] = stack
        if "collaboration_owner" in (config.get("roles") or []):
            owners.append(stack)
    if len(owners) != 1:
        raise PlanError(f"exactly one stack file in {root} must have role collaboration_owner; "
                        f"found {[f'Pulumi.{s}.yaml' for s in owners] or 'none'}")
    return (owners[0], *sorted(s for s in names if s != owners[0]))


def simulate(overrides: Mapping[str, Mapping[str, Any]] | None = None, root: Path = ROOT,
             stacks: Iterable[str] | None = None) -> Rounds:
    """Run the stacks of ``root`` until they converge; ``overrides`` maps a stack to config overrides
    (see harness.stack_config). A ConfigError carries ``plan_context`` (the stack and round)."""
    stacks = tuple(stacks) if stacks is not None else discover(root)
    # Enough for any order of dependencies: each stack waits on each other at most once, plus the check.
    limit = len(stacks) * (len(stacks) + 2)
    runs: dict[int, Run] = {}
    order: list[tuple[int, str]] = []
    check: list[tuple[int, str]] = []
    changes: dict[int, list[str]] = {}
    latest: dict[str, Run] = {}
    fingerprints: dict[str, str] = {}
    attempt = 0
    while len(check) < len(stacks):
        if attempt == limit:
            raise PlanError(f"the stacks do not converge after {limit} runs (each run changes another stack); "
                            f"last changes: {', '.join(changes.get(order[-1][0], []))}")
        stack = stacks[attempt % len(stacks)]
        attempt += 1
        number = len(order) + len(check) + 1
        peer_outputs = {stack_ref(other): run.outputs for other, run in latest.items() if other != stack}
        try:
            run = run_stack(stack, peer_outputs=peer_outputs, overrides=dict((overrides or {}).get(stack) or {}),
                            root=root)
        except ConfigError as exc:
            exc.plan_context = f"{stack}, round {number}"  # type: ignore[attr-defined]
            raise
        fingerprint = _fingerprint(run)
        if fingerprints.get(stack) == fingerprint:
            check.append((number, stack))
        else:
            if check:  # a change after runs that changed nothing: those were not needed; renumber
                number = len(order) + 1
                for dropped, _ in check:
                    runs.pop(dropped, None)
                check.clear()
            changes[number] = _changes(latest.get(stack), run)
            order.append((number, stack))
            fingerprints[stack] = fingerprint
        runs[number] = latest[stack] = run
    return Rounds(stacks, tuple(order), tuple(check), runs, changes)


def _fingerprint(run: Run) -> str:
    """What a `pulumi up` would compare: each resource's inputs and options, and the exports."""
    resources = sorted((dict(resource_plan(r), deps=sorted(r.dependencies)) for r in run.resources),
                       key=lambda r: r["urn"])
    return json.dumps({"resources": resources, "outputs": run.outputs}, sort_keys=True, default=str)


def _changes(before: Run | None, after: Run) -> list[dict]:
    """Per resource added (``+``), removed (``-``) or changed (``~``) against ``before``: {op, type, name};
    and {op: "~", type: "exports", name: the changed keys}."""
    old = {r.urn: resource_plan(r) for r in (before.resources if before else [])}
    new = {r.urn: resource_plan(r) for r in after.resources}
    found = [("+", new[u]) for u in new.keys() - old.keys() if new[u]["type"] != "pulumi:pulumi:StackReference"]
    found += [("-", old[u]) for u in old.keys() - new.keys()]
    found += [("~", new[u]) for u in old.keys() & new.keys() if _comparable(old[u]) != _comparable(new[u])]
    out = sorted(({"op": op, "type": r["type"], "name": r["name"]} for op, r in found),
                 key=lambda c: (c["op"], c["type"], c["name"]))
    if before is not None and before.outputs != after.outputs:
        keys = sorted(k for k in after.outputs.keys() | before.outputs.keys()
                      if after.outputs.get(k) != before.outputs.get(k))
        out.append({"op": "~", "type": "exports", "name": ",".join(keys)})
    return out


def round_number(label: str, rounds: Rounds) -> int:
    """``final`` or a round number of ``rounds``; PlanError naming --round otherwise."""
    if label == "final":
        return rounds.final
    if not label.isdigit() or not 1 <= int(label) <= rounds.final:
        raise PlanError(f"--round {label}: these stacks have rounds 1 to {rounds.final} (or final)")
    return int(label)


def rounds_from(bootstrap: Any) -> Rounds:
    """The rounds of tests/conftest.py's Bootstrap (the session's simulation of the shipped stacks)."""
    return bootstrap.rounds


# --------------------------------------------------------------------------
# The plan as data


def build_plan(rounds: Rounds, round_label: str = "final", stacks: Iterable[str] | None = None) -> dict:
    """The plan after round ``round_label``: per stack, its latest run at or before that round."""
    upto = round_number(round_label, rounds)
    plan: dict[str, Any] = {"format": PLAN_FORMAT, "round": round_label, "stacks": {}}
    for stack in rounds.stacks if stacks is None else stacks:
        latest = rounds.latest(stack, upto)
        if latest is None:
            first = next(n for n, s in rounds.all if s == stack)
            plan["stacks"][stack] = {"deployed": False, "first_round": first, "resources": [], "exports": {},
                                     "logs": []}
            continue
        number, run = latest
        plan["stacks"][stack] = stack_plan(run, number)
    return plan


def render_rounds(rounds: Rounds, root: Path = ROOT) -> str:
    """The order of `pulumi up` runs, each with what it adds, and the check that nothing is left."""
    config = "" if Path(root).resolve() == ROOT else f" --config-file {_relative(root)}/Pulumi.{{stack}}.yaml"
    lines = [f"{len(rounds.order)} rounds over {len(rounds.stacks)} stacks ({', '.join(rounds.stacks)}); "
             "read each preview before its up:"]
    width = max(len(s) for s in rounds.stacks)
    for number, stack in rounds.order:
        changes = rounds.changes.get(number, [])
        counts = [f"{sum(1 for c in changes if c['op'] == op and c['type'] != 'exports')} {word}"
                  for op, word in (("+", "added"), ("~", "changed"), ("-", "removed"))]
        counts = [c for c in counts if not c.startswith("0 ")]
        if any(c["type"] == "exports" for c in changes):
            counts.append("exports changed")
        lines.append(f"  {number:>2}. pulumi up --stack {stack.ljust(width)}{config.format(stack=stack)}   "
                     f"{', '.join(counts) or 'no change'}")
        # The Clean Rooms resources and IAM roles: what the order exists for (ids and trust across stacks).
        notable = [f"{c['op']}{c['type'].rsplit(':', 1)[-1]} {c['name']}" for c in changes
                   if c["type"].startswith(CR) or c["type"] == "aws:iam/role:Role"]
        for start in range(0, len(notable), 3):
            lines.append("        " + ", ".join(notable[start:start + 3]))
    lines.append(f"after round {rounds.order[-1][0]}, another `pulumi up` on any stack changes nothing "
                 f"(checked: rounds {rounds.check[0][0]}-{rounds.check[-1][0]} ran "
                 f"{', '.join(s for _, s in rounds.check)} again without a change)")
    return "\n".join(lines) + "\n"


def _relative(path: Path) -> str:
    path = Path(path).resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def stack_plan(run: Run, number: int) -> dict:
    resources = sorted((resource_plan(r) for r in run.resources), key=lambda r: r["urn"])
    return {"deployed": True, "round": number, "resources": resources,
            "exports": {k: run.outputs[k] for k in EXPORTS if k in run.outputs}, "logs": list(run.logs)}


def resource_plan(resource: Registered) -> dict:
    inputs = _decoded(resource.inputs)
    entry = {
        "urn": resource.urn,
        "type": resource.typ,
        "name": resource.name,
        "parent": _parent(resource.parent),
        "protect": resource.protect,
        "provider": _provider_name(resource.provider),
        "summary": summary(resource.typ, inputs),
        "inputs": inputs,
        "replaceOnChanges": sorted(resource.replace_on_changes),
        "ignoreChanges": sorted(resource.ignore_changes),
    }
    if resource.typ == "pulumi:pulumi:StackReference":
        entry["summary"] = {"stack": resource.id}
    return entry


def summary(typ: str, inputs: dict) -> dict[str, Any]:
    found: dict[str, Any] = {}
    paths = IMPORTANT.get(typ)
    for label, path in paths or FALLBACK:
        values = _pick(inputs, path.split("."))
        if not values:
            continue
        if "*" in path:
            flat: list[Any] = []
            for value in values:
                flat.extend(value if isinstance(value, list) else [value])
            found[label] = flat
        else:
            found[label] = values[0]
        if paths is None:
            break
    return found


def _pick(value: Any, parts: list[str]) -> list[Any]:
    if not parts:
        return [value]
    head, rest = parts[0], parts[1:]
    if head == "*":
        return [x for item in value for x in _pick(item, rest)] if isinstance(value, list) else []
    if isinstance(value, list):
        if head.isdigit() and int(head) < len(value):
            return _pick(value[int(head)], rest)
        return []
    if isinstance(value, dict) and head in value:
        return _pick(value[head], rest)
    return []


def _decoded(value: Any) -> Any:
    """Inputs with JSON-encoded documents (IAM policies, provider settings) parsed, numbers normalized."""
    if isinstance(value, dict):
        return {k: _decoded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    if isinstance(value, str) and value[:1] in "[{":
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return _decoded(parsed) if isinstance(parsed, (dict, list)) else value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the engine's numbers are floats: 3.0 is the 3 the program declared
    return value


def _parent(urn: str) -> str | None:
    """The parent's URN, None for the stack itself (urn:pulumi:<stack>::<project>::pulumi:pulumi:Stack::<name>)."""
    parts = urn.split("::") if urn else []
    return None if len(parts) < 3 or parts[2] == "pulumi:pulumi:Stack" else urn


def _provider_name(provider: str) -> str | None:
    # urn:pulumi:<stack>::<project>::pulumi:providers:aws::<name>::<id>
    parts = provider.split("::") if provider else []
    return parts[-2] if len(parts) >= 2 else None


def to_json(plan: dict) -> str:
    return json.dumps(plan, indent=2, sort_keys=True) + "\n"


# --------------------------------------------------------------------------
# Text


_UUID = re.compile(r"\b([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_ARN = re.compile(r"^arn:[^:]*:[^:]*:[^:]*:(\d{12})?:(.*)$")


def short(value: Any, limit: int = 70) -> str:
    """A value for one line: ids to their first 8 characters, ARNs to account:resource, lists joined."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(short(v, limit) for v in value) if value else "[]"
    if isinstance(value, dict):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    else:
        text = str(value)
        arn = _ARN.match(text)
        if arn:
            text = f"{arn.group(1)}:{arn.group(2)}" if arn.group(1) else arn.group(2)
        text = _UUID.sub(r"\1", text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def render_text(plan: dict) -> str:
    lines: list[str] = []
    label = plan["round"]
    after = "the final round" if label == "final" else f"round {label}"
    for stack, entry in plan["stacks"].items():
        if lines:
            lines.append("")
        if not entry.get("deployed"):
            lines.append(f"== {stack} after {after}: not deployed yet (its first round is {entry['first_round']}) ==")
            continue
        resources = entry["resources"]
        protected = sum(1 for r in resources if r["protect"])
        lines.append(f"== {stack} after {after} (its round {entry['round']}): "
                     f"{len(resources)} resources, {protected} protected ==")
        children: dict[str | None, list[dict]] = {}
        urns = {r["urn"] for r in resources}
        for resource in resources:
            parent = resource["parent"] if resource["parent"] in urns else None
            children.setdefault(parent, []).append(resource)

        def walk(parent: str | None, depth: int) -> None:
            ordered = sorted(children.get(parent, []),
                             key=lambda r: (not r["type"].startswith("pulumi:"), r["name"], r["type"]))
            for resource in ordered:
                parts = [resource["type"], resource["name"]]
                if resource["protect"]:
                    parts.append("protect")
                facts = " ".join(f"{k}={short(v)}" for k, v in resource["summary"].items())
                if facts:
                    parts.append(facts)
                lines.append("  " * (depth + 1) + "  ".join(parts))
                walk(resource["urn"], depth + 1)

        walk(None, 0)
        lines.append("  exports:")
        exports = entry["exports"]
        if not exports:
            lines.append("    (none)")
        width = max((len(k) for k in exports), default=0)
        for key in EXPORTS:
            if key in exports:
                lines.append(f"    {key.ljust(width)}  {_export_text(exports[key])}")
        lines.append("  log:" if entry["logs"] else "  log: (none)")
        lines.extend(f"    {line}" for line in entry["logs"])
    return "\n".join(lines) + "\n"


def _export_text(value: Any) -> str:
    if isinstance(value, dict):
        if not value:
            return "{} (nothing pending)"
        return "; ".join(f"{k} waits for {', '.join(map(str, v)) if isinstance(v, list) else v}"
                         for k, v in sorted(value.items()))
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "[]"
    return "- (not yet)" if value is None else str(value)


# --------------------------------------------------------------------------
# Diff


def load_plan(path: str | Path) -> dict:
    """A plan written by --save; PlanError naming --diff when it is missing or not a plan."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(f"--diff {path}: no such file") from None
    except OSError as exc:
        raise PlanError(f"--diff {path}: cannot read it ({exc.strerror})") from None
    try:
        plan = json.loads(text)
    except ValueError as exc:
        raise PlanError(f"--diff {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    problem = _plan_shape_problem(plan)
    if problem:
        raise PlanError(f"--diff {path}: not a plan saved with --save ({problem})")
    return plan


def _plan_shape_problem(plan: Any) -> str | None:
    if not isinstance(plan, dict) or not isinstance(plan.get("stacks"), dict):
        return "no 'stacks' mapping"
    if plan.get("format") != PLAN_FORMAT:
        return f"format {plan.get('format')!r}, expected {PLAN_FORMAT}"
    for stack, entry in plan["stacks"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("resources"), list):
            return f"stack {stack!r} has no 'resources' list"
        for resource in entry["resources"]:
            if not isinstance(resource, dict) or not all(
                    isinstance(resource.get(k), str) for k in ("urn", "type", "name")):
                return f"a resource of stack {stack!r} lacks urn/type/name"
            if not isinstance(resource.get("inputs", {}), dict):
                return f"resource {resource['urn']!r} has inputs that are not a mapping"
        if not isinstance(entry.get("exports", {}), dict):
            return f"stack {stack!r} has exports that are not a mapping"
    return None


def diff_plans(old: dict, new: dict) -> dict:
    """Per stack of ``new``: resources added, removed and changed (with the changed input paths)."""
    result: dict[str, Any] = {"stacks": {}, "notes": []}
    if old.get("round") != new.get("round"):
        result["notes"].append(f"the saved plan is of round {old.get('round')}, this one of round {new.get('round')}")
    for stack, entry in new["stacks"].items():
        before = old["stacks"].get(stack)
        if before is None:
            result["notes"].append(f"{stack} is not in the saved plan: everything in it shows as added")
            before = {"resources": [], "exports": {}}
        old_by_urn = {r["urn"]: r for r in before["resources"]}
        new_by_urn = {r["urn"]: r for r in entry["resources"]}
        changed = []
        for urn in sorted(old_by_urn.keys() & new_by_urn.keys(), key=lambda u: (new_by_urn[u]["name"], u)):
            r = new_by_urn[urn]
            # What `pulumi preview` leaves alone: a change under an ignoreChanges path keeps the old value.
            paths = [c for c in changed_paths(_comparable(old_by_urn[urn]), _comparable(r))
                     if not _replaces(c["path"], r.get("ignoreChanges") or [])]
            if paths:
                replaces = sorted({c["path"] for c in paths if _replaces(c["path"], r.get("replaceOnChanges") or [])})
                changed.append({"urn": urn, "type": r["type"], "name": r["name"], "changes": paths,
                                "replaces": replaces, "protect": bool(r.get("protect"))})
        result["stacks"][stack] = {
            "added": _idents(new_by_urn[u] for u in new_by_urn.keys() - old_by_urn.keys()),
            "removed": _idents(old_by_urn[u] for u in old_by_urn.keys() - new_by_urn.keys()),
            "changed": changed,
            "exports": changed_paths(before.get("exports", {}), entry.get("exports", {})),
        }
    return result


def _replaces(path: str, patterns: Iterable[str]) -> bool:
    """Whether input ``path`` (dotted, list indexes as numbers) is at or under one of ``patterns``: a
    replaceOnChanges pattern ("allowedResultRegions[*]", "members[*]", "tableReference.glue") when a change to
    it replaces the resource, or an ignoreChanges one ("members[*].paymentConfiguration")."""
    parts = path.split(".")
    for pattern in patterns:
        wanted = pattern.replace("[*]", ".*").split(".")
        while wanted and wanted[-1] == "*":  # "members[*]": the list itself, or any of its items
            wanted.pop()
        if len(parts) >= len(wanted) and all(w in ("*", p) for w, p in zip(wanted, parts)):
            return True
    return False


def _idents(resources: Iterable[dict]) -> list[dict]:
    return sorted(({"urn": r["urn"], "type": r["type"], "name": r["name"]} for r in resources),
                  key=lambda r: (r["name"], r["type"], r["urn"]))


def _comparable(resource: dict) -> dict:
    # The options a deployment compares, as pseudo-paths beside the inputs.
    return {"inputs": resource.get("inputs", {}),
            **{f"({k})": resource.get(k) for k in ("parent", "protect", "provider")}}


_MISSING = object()


def changed_paths(old: Any, new: Any) -> list[dict]:
    """The paths whose values differ, deepest first where both sides have the same shape:
    [{"path", "old", "new"}] (None for a side that lacks the path); "inputs." is dropped from input paths."""
    changes: list[dict] = []
    _compare(old, new, "", changes)
    for change in changes:
        if change["path"].startswith("inputs."):
            change["path"] = change["path"][len("inputs."):]
    return changes


def _compare(old: Any, new: Any, path: str, out: list[dict]) -> None:
    def at(key: Any) -> str:
        return f"{path}.{key}" if path else str(key)

    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() | new.keys(), key=str):
            _compare(old.get(key, _MISSING), new.get(key, _MISSING), at(key), out)
    elif isinstance(old, list) and isinstance(new, list):
        for index in range(max(len(old), len(new))):
            _compare(old[index] if index < len(old) else _MISSING, new[index] if index < len(new) else _MISSING,
                     at(index), out)
    elif old != new or type(old) is not type(new):
        out.append({"path": path, "old": None if old is _MISSING else old, "new": None if new is _MISSING else new})


def diff_counts(diff: dict) -> tuple[int, int, int, int]:
    stacks = diff["stacks"].values()
    return (sum(len(s["added"]) for s in stacks), sum(len(s["removed"]) for s in stacks),
            sum(len(s["changed"]) for s in stacks), sum(1 for s in stacks if s["exports"]))


def summary_line(diff: dict, against: str) -> str:
    added, removed, changed, exports = diff_counts(diff)
    if not (added or removed or changed or exports):
        return f"no change against {against}"
    return (f"{added} added, {removed} removed, {changed} changed resource(s)"
            f"{f', exports changed in {exports} stack(s)' if exports else ''} against {against}")


def render_diff(diff: dict, against: str, max_paths: int = 12) -> str:
    lines = [f"note: {note}" for note in diff["notes"]]
    for stack, entry in diff["stacks"].items():
        counts = f"{len(entry['added'])} added, {len(entry['removed'])} removed, {len(entry['changed'])} changed"
        lines.append(f"{stack}: {counts}" + (", exports changed" if entry["exports"] else ""))
        for r in entry["added"]:
            lines.append(f"  + {r['type']}  {r['name']}")
        for r in entry["removed"]:
            lines.append(f"  - {r['type']}  {r['name']}")
        for r in entry["changed"]:
            if r.get("replaces"):
                # What `pulumi preview` shows as a replacement; protect makes `pulumi up` refuse it.
                stop = "; protected: `pulumi up` refuses to replace it" if r.get("protect") else ""
                lines.append(f"  +- {r['type']}  {r['name']}  (replaced: {', '.join(r['replaces'])} cannot change "
                             f"in place{stop})")
            else:
                lines.append(f"  ~ {r['type']}  {r['name']}")
            lines.extend(_change_lines(r["changes"], max_paths))
        if entry["exports"]:
            lines.append("  ~ exports")
            lines.extend(_change_lines(entry["exports"], max_paths))
    lines.append(summary_line(diff, against))
    return "\n".join(lines) + "\n"


def _change_lines(changes: list[dict], max_paths: int) -> list[str]:
    lines = [f"      {c['path']}: {short(c['old'], 40)} -> {short(c['new'], 40)}" for c in changes[:max_paths]]
    if len(changes) > max_paths:
        lines.append(f"      ... and {len(changes) - max_paths} more path(s)")
    return lines


# --------------------------------------------------------------------------
# Command line


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m offline.plan",
        description="Print the resources each stack would declare, from the stack files under the test "
                    "suite's mocks: no Pulumi CLI, no AWS credentials, no network.")
    p.add_argument("--stacks-dir", metavar="DIR", type=Path, default=ROOT,
                   help="the folder of the Pulumi.<stack>.yaml files (default: the project's; "
                        "e.g. examples/three-orgs)")
    p.add_argument("--stack", metavar="NAME", help="one stack (default: every stack file)")
    p.add_argument("--rounds", action="store_true",
                   help="print the order of `pulumi up` runs that makes the stacks converge, each with what it "
                        "declares or changes, instead of the plan")
    p.add_argument("--round", default="final", metavar="N",
                   help="the state after deploy round N (see --rounds), or final: after every stack has run "
                        "once more without a change (default)")
    p.add_argument("--json", action="store_true", help="print the plan (or the diff, or the rounds) as JSON")
    p.add_argument("--save", metavar="FILE", help="also write the JSON plan to FILE")
    p.add_argument("--diff", metavar="FILE",
                   help="compare with a plan saved by --save and print what was added, removed or changed "
                        "(instead of the plan); exits 0 either way")
    return p


def main(argv: list[str] | None = None, *, overrides: Mapping[str, Mapping[str, Any]] | None = None,
         runs: Rounds | None = None) -> int:
    """The command; ``overrides`` (stack -> config overrides) and ``runs`` (already simulated rounds) are for tests."""
    args = parser().parse_args(argv)
    root = args.stacks_dir if args.stacks_dir.is_absolute() else Path.cwd() / args.stacks_dir
    try:
        if not root.is_dir():
            raise PlanError(f"--stacks-dir {args.stacks_dir}: not a folder")
        saved = load_plan(args.diff) if args.diff else None
        if runs is None:
            runs = simulate(overrides, root)
        if args.stack is not None and args.stack not in runs.stacks:
            raise PlanError(f"--stack {args.stack}: no Pulumi.{args.stack}.yaml in {_relative(root)}; "
                            f"stacks: {', '.join(runs.stacks)}")
        stacks = [args.stack] if args.stack else list(runs.stacks)
        plan = build_plan(runs, args.round, stacks)
        if args.save:
            try:
                Path(args.save).write_text(to_json(plan), encoding="utf-8")
            except OSError as exc:
                raise PlanError(f"--save {args.save}: cannot write it ({exc.strerror})") from None
    except PlanError as exc:
        return fail(str(exc))
    except ConfigError as exc:
        context = getattr(exc, "plan_context", None)
        return fail(config_problems(exc) + (f" ({context})" if context else ""))
    if args.rounds:
        if args.json:
            sys.stdout.write(json.dumps({"stacks": list(runs.stacks),
                                         "rounds": [{"round": n, "stack": s, "changes": runs.changes.get(n, [])}
                                                    for n, s in runs.order],
                                         "check": [{"round": n, "stack": s} for n, s in runs.check]},
                                        indent=2) + "\n")
        else:
            sys.stdout.write(render_rounds(runs, root))
    elif saved is not None:
        if args.stack:
            saved = dict(saved, stacks={k: v for k, v in saved["stacks"].items() if k in stacks})
        diff = diff_plans(saved, plan)
        if args.json:
            sys.stdout.write(json.dumps(dict(diff, summary=summary_line(diff, args.diff)), indent=2,
                                        sort_keys=True) + "\n")
        else:
            sys.stdout.write(render_diff(diff, args.diff))
    elif args.json:
        sys.stdout.write(to_json(plan))
    else:
        sys.stdout.write(render_text(plan))
    return 0


def config_problems(exc: ConfigError) -> str:
    """A ConfigError's problems, one per line in its message (ConfigError.more), on one line."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def fail(message: str) -> int:
    """Exit status 2, with the message as one ``error: ...`` line on stderr."""
    print("error: " + " ".join(message.split()), file=sys.stderr)
    return 2


def _close_event_loops() -> None:
    """Close the event loops the mock monitor's worker threads opened (Pulumi's _ensure_event_loop).

    Left open, their finalizers run during interpreter shutdown, after their sockets are gone, and
    print "Exception ignored in: BaseEventLoop.__del__" with a traceback. Only at exit: the tests
    run the program again in the same process, on these loops.
    """
    import asyncio
    import gc

    for obj in gc.get_objects():
        if isinstance(obj, asyncio.AbstractEventLoop) and not obj.is_running() and not obj.is_closed():
            obj.close()


if __name__ == "__main__":
    status = main()
    _close_event_loops()
    sys.exit(status)
