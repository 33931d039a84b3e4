"""Run the CrossGuard pack in policy/ over the program's resources, without the CLI.

What the Pulumi engine does with a policy pack, emulated closely enough that a
policy passing here passes under `pulumi preview --policy-pack policy`:

- config: ReconcilePolicyPackConfig (pulumi/pulumi pkg/resource/analyzer):
  defaults from each policy's config schema, then the given config (shallow,
  per property; "all" sets every enforcement level), validated against the
  schema, then sent to the pack as a protobuf Struct (so 3 arrives as 3.0).
- Analyze (resource policies): type, name, urn, the inputs (camelCase, as
  Registered.inputs), options (protect, parent) and the provider resource with
  its inputs, the properties wrapped in pulumi_policy's unknown-checking proxy.
  A policy that reads an unknown gets an advisory "can't run during preview".
- AnalyzeStack: every resource as a PolicyResource (props = outputs: the mock
  state overlaid with the inputs, plus ``id``), parents and dependencies linked.

Tests import the policy package from policy/ (never policy/__main__.py: building
a PolicyPack starts a gRPC server and blocks).
"""

from __future__ import annotations

import copy
import functools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import jsonschema
from google.protobuf import json_format, struct_pb2

from offline.plan import simulate
from tests.harness import ROOT, Registered, Run, run_stack, stack_ref

POLICY_DIR = ROOT / "policy"
if str(POLICY_DIR) not in sys.path:
    sys.path.insert(0, str(POLICY_DIR))

import cleanrooms_guard  # noqa: E402
from pulumi_policy import (EnforcementLevel, Policy, PolicyCustomTimeouts, PolicyProviderResource,  # noqa: E402
                           PolicyResource, PolicyResourceOptions, ResourceValidationArgs, ResourceValidationPolicy,
                           StackValidationArgs, StackValidationPolicy)
from pulumi_policy.deserialize import deserialize_properties, serialize_properties  # noqa: E402
from pulumi_policy.policy import _NotApplicableError  # noqa: E402
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy  # noqa: E402

POLICIES: list[Policy] = cleanrooms_guard.POLICIES
BY_NAME: dict[str, Policy] = {p.name: p for p in POLICIES}
UNKNOWN = UNKNOWN_STRING_VALUE  # what the engine sends for an unknown string during preview


# --------------------------------------------------------------------------
# The shipped stacks, after the full bootstrap (run once per test session)


@functools.lru_cache(maxsize=None)
def bootstrap(root: Path = ROOT) -> dict[str, Run]:
    """Each stack of ``root`` after its deploy rounds (offline.plan.simulate: everything declared), and
    "<owner>-first": the owner's first round, before any partner has deployed."""
    rounds = simulate(root=root)
    runs = {stack: rounds.latest(stack)[1] for stack in rounds.stacks}
    runs[f"{rounds.stacks[0]}-first"] = rounds.runs[rounds.order[0][0]]
    return runs


def run_with(stack: str, overrides: dict[str, Any], root: Path = ROOT) -> Run:
    """Re-run one stack of the bootstrap with config overrides, fed every other stack's final exports."""
    runs = bootstrap(root)
    peers = {stack_ref(other): run.outputs for other, run in runs.items()
             if other != stack and not other.endswith("-first")}
    return run_stack(stack, peer_outputs=peers, overrides=overrides, root=root)


# --------------------------------------------------------------------------
# Config, as the engine reconciles it


def effective_config(given: dict[str, Any] | None = None,
                     policies: Iterable[Policy] = POLICIES) -> dict[str, tuple[EnforcementLevel, dict]]:
    """policy name -> (enforcement level, config properties as the pack receives them)."""
    given = copy.deepcopy(given or {})
    result: dict[str, tuple[EnforcementLevel, dict]] = {}
    all_level = given.pop("all", None)
    if isinstance(all_level, dict):
        all_level = all_level.get("enforcementLevel")
    for policy in policies:
        level = policy.enforcement_level or cleanrooms_guard.DEFAULT_ENFORCEMENT
        schema = policy.config_schema
        props = {k: v["default"] for k, v in (schema.properties.items() if schema else []) if "default" in v}
        if all_level:
            level = EnforcementLevel(all_level)
        entry = given.get(policy.name)
        if isinstance(entry, str):
            level = EnforcementLevel(entry)
        elif isinstance(entry, dict):
            entry = dict(entry)
            if "enforcementLevel" in entry:
                level = EnforcementLevel(entry.pop("enforcementLevel"))
            props.update(entry)
        if schema is not None:
            jsonschema.validate(props, {"type": "object", "properties": schema.properties,
                                        "required": schema.required or []})
        elif props:
            raise ValueError(f"policy {policy.name} takes no config, got {props}")
        result[policy.name] = (level, _through_struct(props))
    unknown = set(given) - {p.name for p in policies}
    if unknown:
        raise ValueError(f"config names no policy of the pack: {sorted(unknown)}")
    return result


def _through_struct(props: dict) -> dict:
    message = struct_pb2.Struct()
    message.update(props)
    return json_format.MessageToDict(message)


def _wire(props: dict) -> Any:
    """Properties as an analyzer receives them: serialized, a protobuf Struct, proxied for unknowns."""
    message = struct_pb2.Struct()
    message.update(serialize_properties(props))
    return unknown_checking_proxy(deserialize_properties(json_format.MessageToDict(message)))


# --------------------------------------------------------------------------
# Turning Registered resources into what the engine sends


def _provider_urn(reference: str) -> str:
    return reference.rsplit("::", 1)[0] if reference else ""


def _opts(r: Registered) -> PolicyResourceOptions:
    return PolicyResourceOptions(r.protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], r.parent or None)


def _provider(r: Registered, by_urn: dict[str, Registered]) -> PolicyProviderResource | None:
    urn = _provider_urn(r.provider)
    if not urn:
        return None
    p = by_urn.get(urn)
    name = urn.split("::")[-1]
    typ = urn.split("::")[-2].split("$")[-1]
    return PolicyProviderResource(typ, _wire(p.inputs if p else {}), urn, name)


def resource_args(r: Registered, resources: list[Registered], config: dict | None = None) -> ResourceValidationArgs:
    by_urn = {x.urn: x for x in resources}
    return ResourceValidationArgs(r.typ, _wire(r.inputs), r.urn, r.name, _opts(r), _provider(r, by_urn), config)


def stack_args(resources: list[Registered], config: dict | None = None) -> StackValidationArgs:
    by_urn = {x.urn: x for x in resources}
    policy_resources: dict[str, PolicyResource] = {}
    for r in resources:
        outputs = {**r.state, **r.inputs}
        if r.custom and r.id:
            outputs.setdefault("id", r.id)
        policy_resources[r.urn] = PolicyResource(r.typ, _wire(outputs), r.urn, r.name, _opts(r),
                                                 _provider(r, by_urn), None, [], {})
    for r in resources:
        pr = policy_resources[r.urn]
        pr.parent = policy_resources.get(r.parent)
        pr.dependencies = [policy_resources[d] for d in r.dependencies if d in policy_resources]
    return StackValidationArgs(list(policy_resources.values()), config)


# --------------------------------------------------------------------------
# Running the pack


@dataclass
class Violation:
    policy: str
    level: str  # "mandatory" | "advisory"
    message: str
    urn: str

    @property
    def resource_name(self) -> str:
        return self.urn.split("::")[-1] if self.urn else ""


@dataclass
class Report:
    violations: list[Violation] = field(default_factory=list)
    not_applicable: list[tuple[str, str]] = field(default_factory=list)  # (policy, reason)
    preview_notes: list[tuple[str, str]] = field(default_factory=list)  # (policy, message) unknown values

    @property
    def mandatory(self) -> list[Violation]:
        return [v for v in self.violations if v.level == "mandatory"]

    def of(self, policy: str) -> list[Violation]:
        assert policy in BY_NAME, f"no policy {policy!r} in the pack"
        return [v for v in self.violations if v.policy == policy]

    def messages(self, policy: str) -> list[str]:
        return [v.message for v in self.of(policy)]

    def __str__(self) -> str:
        return "\n".join(f"[{v.level}] {v.policy} {v.resource_name}: {v.message}" for v in self.violations) or "clean"


def evaluate(resources: list[Registered] | Run, config: dict | None = None,
             policies: Iterable[str] | None = None) -> Report:
    """Run the pack's policies (or the named ones) over a stack's resources, like Analyze + AnalyzeStack."""
    if isinstance(resources, Run):
        resources = resources.resources
    selected = [BY_NAME[n] for n in policies] if policies is not None else POLICIES
    configs = effective_config(config)
    report = Report()
    for policy in selected:
        level, props = configs[policy.name]
        if level == EnforcementLevel.DISABLED:
            continue
        if level == EnforcementLevel.REMEDIATE:
            level = EnforcementLevel.MANDATORY

        def reporter(default_urn: str) -> Callable[[str, str | None], None]:
            def report_violation(message: str, urn: str | None = None) -> None:
                report.violations.append(Violation(policy.name, level.value, message, urn or default_urn))
            return report_violation

        targets: list[tuple[Any, str]]
        if isinstance(policy, ResourceValidationPolicy):
            targets = [(resource_args(r, resources, props or None), r.urn) for r in resources]
        elif isinstance(policy, StackValidationPolicy):
            targets = [(stack_args(resources, props or None), "")]
        else:  # pragma: no cover
            continue
        for args, urn in targets:
            try:
                # Stack violations name their resource; a resource policy's urn is always its resource's.
                policy.validate(args, reporter(urn) if isinstance(policy, StackValidationPolicy)
                                else (lambda m, _u=None, _urn=urn: reporter(_urn)(m, _urn)))
            except UnknownValueError as e:
                report.preview_notes.append((policy.name, e.message))
            except _NotApplicableError as e:
                report.not_applicable.append((policy.name, e.reason or ""))
    return report


# --------------------------------------------------------------------------
# Editing real program output


def find(resources: list[Registered] | Run, typ: str, name_contains: str = "") -> Registered:
    if isinstance(resources, Run):
        resources = resources.resources
    found = [r for r in resources if r.typ == typ and name_contains in r.name]
    assert found, f"no {typ} named like {name_contains!r}"
    return found[0]


def edited(resources: list[Registered] | Run, target: Registered,
           change: Callable[[Registered], None]) -> list[Registered]:
    """The stack's resources with one deep-copied resource changed by ``change``."""
    if isinstance(resources, Run):
        resources = resources.resources
    out = []
    for r in resources:
        if r.urn == target.urn:
            r = copy.deepcopy(r)
            change(r)
        out.append(r)
    return out


def without(resources: list[Registered] | Run, *targets: Registered) -> list[Registered]:
    if isinstance(resources, Run):
        resources = resources.resources
    drop = {t.urn for t in targets}
    return [r for r in resources if r.urn not in drop]


def set_document(r: Registered, key: str, change: Callable[[dict], None]) -> None:
    """Edit a JSON policy document input (e.g. 'policy', 'assumeRolePolicy') in place."""
    document = json.loads(r.inputs[key])
    change(document)
    r.inputs[key] = json.dumps(document)


def load_config_file(path: Path) -> dict:
    return json.loads(path.read_text())
