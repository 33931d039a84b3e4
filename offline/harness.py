"""Run the real Pulumi program (or one component) under Pulumi's mocks.

No CLI and no cloud: the engine is replaced by a recording mock monitor that
keeps every registered resource with its inputs *and* options (parent,
provider, protect, dependencies), which the default mocks do not show. The
mocked cloud answers with deterministic ids shaped like the real ones (36-char
UUIDs, real ARN formats), so the same program run twice declares exactly the
same inputs and a run's exports can feed another stack's stack reference.

One harness for everything that runs the program offline: the test suite
(tests/harness.py re-exports this module) and the reviewers' plan
(``python -m offline.plan``). ``LAST_MONITOR`` is the latest run's monitor,
kept even when the program raised; read it as ``harness.LAST_MONITOR`` (a
module attribute, rebound by every run), not by importing the name.
"""

from __future__ import annotations

import json
import runpy
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.config import set_all_config
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from model.stackfiles import load_stack_config

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "cleanrooms-collab"
LAST_MONITOR = None


@dataclass
class Registered:
    """One resource as the engine saw it."""

    typ: str
    name: str
    inputs: dict
    urn: str
    parent: str
    provider: str
    protect: bool
    custom: bool
    dependencies: list[str]
    ignore_changes: list[str] = field(default_factory=list)
    replace_on_changes: list[str] = field(default_factory=list)
    """Input paths whose change replaces the resource (the SDK sends a type's create-only properties)."""
    id: str = ""
    state: dict = field(default_factory=dict)

    def input(self, path: str, default: Any = None) -> Any:
        """inputs by dotted path, e.g. input('defaultResultConfiguration.roleArn')."""
        value: Any = self.inputs
        for part in path.split("."):
            if isinstance(value, list):
                value = value[int(part)]
            elif isinstance(value, dict) and part in value:
                value = value[part]
            else:
                return default
        return value


@dataclass
class Run:
    resources: list[Registered]
    outputs: dict[str, Any]
    component_outputs: dict[str, dict]  # urn -> outputs registered by a component
    logs: list[str]

    def of_type(self, typ: str) -> list[Registered]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str) -> Registered:
        found = self.of_type(typ)
        assert len(found) == 1, f"expected one {typ}, found {[r.name for r in found]}"
        return found[0]

    def named(self, name: str) -> Registered:
        return next(r for r in self.resources if r.name == name)

    def by_urn(self, urn: str) -> Registered:
        return next(r for r in self.resources if r.urn == urn)

    def types(self) -> set[str]:
        return {r.typ for r in self.resources}


ARN_FORMS = {
    "aws:cloudtrail/trail:Trail": "cloudtrail:{region}:{account}:trail/{name}",
    "aws:cloudwatch/logGroup:LogGroup": "logs:{region}:{account}:log-group:{name}",
    "aws:lambda/function:Function": "lambda:{region}:{account}:function:{name}",
    "aws:cloudwatch/eventRule:EventRule": "events:{region}:{account}:rule/{name}",
    "aws:sns/topic:Topic": "sns:{region}:{account}:{name}",
    "aws:cloudwatch/metricAlarm:MetricAlarm": "cloudwatch:{region}:{account}:alarm:{name}",
    "aws:kinesis/stream:Stream": "kinesis:{region}:{account}:stream/{name}",
    "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream": "firehose:{region}:{account}:deliverystream/{name}",
}

# QuickSight ARNs name the resource by the id the caller chose.
QUICKSIGHT_IDS = {
    "aws:quicksight/dataSource:DataSource": ("datasource", "dataSourceId"),
    "aws:quicksight/dataSet:DataSet": ("dataset", "dataSetId"),
    "aws-native:quicksight:Dashboard": ("dashboard", "dashboardId"),
}


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)))


class CloudMocks(pulumi.runtime.Mocks):
    """Answers like AWS would: ids and ARNs in the real formats."""

    def __init__(self, stack: str, account_id: str, region: str, peer_outputs: dict[str, dict]):
        self.stack, self.account, self.region = stack, account_id, region
        self.peer_outputs = peer_outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}, None

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs, typ, name = dict(args.inputs), args.typ, args.name
        if typ == "pulumi:pulumi:StackReference":
            target = inputs.get("name") or args.resource_id
            return target, {"name": target, "outputs": self.peer_outputs.get(target, {}),
                            "secretOutputNames": []}
        rid = _uuid(self.stack, typ, name)
        state = dict(inputs)
        cr = f"arn:aws:cleanrooms:{self.region}:{self.account}"
        if typ == "aws-native:cleanrooms:Collaboration":
            state.update(collaborationIdentifier=rid, arn=f"{cr}:collaboration/{rid}")
        elif typ == "aws-native:cleanrooms:Membership":
            state.update(membershipIdentifier=rid, arn=f"{cr}:membership/{rid}",
                         collaborationArn=f"{cr}:collaboration/{inputs.get('collaborationIdentifier')}")
        elif typ == "aws-native:cleanrooms:ConfiguredTable":
            state.update(configuredTableIdentifier=rid, arn=f"{cr}:configuredtable/{rid}")
        elif typ == "aws-native:cleanrooms:ConfiguredTableAssociation":
            mid = inputs.get("membershipIdentifier")
            state.update(configuredTableAssociationIdentifier=rid,
                         arn=f"{cr}:membership/{mid}/configuredtableassociation/{rid}")
        elif typ == "aws-native:cleanrooms:AnalysisTemplate":
            mid = inputs.get("membershipIdentifier")
            state.update(analysisTemplateIdentifier=rid, arn=f"{cr}:membership/{mid}/analysistemplate/{rid}")
        elif typ == "aws-native:cleanrooms:PrivacyBudgetTemplate":
            state.update(privacyBudgetTemplateIdentifier=rid,
                         arn=f"{cr}:membership/{inputs.get('membershipIdentifier')}/privacybudgettemplate/{rid}")
        elif typ == "aws:s3/bucket:Bucket":
            bucket = inputs.get("bucket") or f"{name}-bucket"
            rid = bucket
            state.update(bucket=bucket, arn=f"arn:aws:s3:::{bucket}")
        elif typ == "aws:kms/key:Key":
            state.update(keyId=rid, arn=f"arn:aws:kms:{self.region}:{self.account}:key/{rid}")
        elif typ == "aws:iam/role:Role":
            role = inputs.get("name") or name
            rid = role
            path = inputs.get("path") or "/"  # the path is part of the ARN: role/service-role/<name>
            state.update(arn=f"arn:aws:iam::{self.account}:role{path}{role}", name=role, path=path)
        elif typ in ("aws:glue/catalogDatabase:CatalogDatabase", "aws:glue/catalogTable:CatalogTable"):
            rid = inputs.get("name") or name
            state.update(name=rid, arn=f"arn:aws:glue:{self.region}:{self.account}:{rid}")
        elif typ == "aws:ecr/repository:Repository":
            rid = inputs.get("name") or name
            state.update(arn=f"arn:aws:ecr:{self.region}:{self.account}:repository/{rid}",
                         repositoryUrl=f"{self.account}.dkr.ecr.{self.region}.amazonaws.com/{rid}")
        elif typ == "aws-native:cleanroomsml:ConfiguredModelAlgorithm":
            state["configuredModelAlgorithmArn"] = (f"arn:aws:cleanrooms-ml:{self.region}:{self.account}:"
                                                    f"configured-model-algorithm/{rid}")
        elif typ == "aws-native:cleanroomsml:ConfiguredModelAlgorithmAssociation":
            state["configuredModelAlgorithmAssociationArn"] = (
                f"arn:aws:cleanrooms-ml:{self.region}:{self.account}:membership/{inputs.get('membershipIdentifier')}/"
                f"configured-model-algorithm-association/{rid}")
        elif typ == "aws-native:cleanroomsml:TrainingDataset":
            state["trainingDatasetArn"] = f"arn:aws:cleanrooms-ml:{self.region}:{self.account}:training-dataset/{rid}"
        elif typ == "aws:ssoadmin/permissionSet:PermissionSet":
            instance = str(inputs.get("instanceArn", "")).rsplit("/", 1)[-1]
            state["arn"] = f"arn:aws:sso:::permissionSet/{instance}/ps-{rid.replace('-', '')[:16]}"
        elif typ in ARN_FORMS:
            # ARNs as each service writes them, from the name the program gives.
            rid = inputs.get("name") or name
            state["arn"] = f"arn:aws:{ARN_FORMS[typ].format(region=self.region, account=self.account, name=rid)}"
        elif typ in QUICKSIGHT_IDS:
            kind, key = QUICKSIGHT_IDS[typ]
            state["arn"] = f"arn:aws:quicksight:{self.region}:{self.account}:{kind}/{inputs.get(key)}"
        return rid, state


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, keeping what the default one drops: options and outputs."""

    def __init__(self, mocks: CloudMocks):
        super().__init__(mocks)
        self.registered: list[Registered] = []
        self.component_outputs: dict[str, dict] = {}

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            registration = self.resources.get(response.urn)
            inputs = pulumi.runtime.rpc.deserialize_properties(request.object)
            self.registered.append(Registered(
                typ=request.type, name=request.name, inputs=_plain(inputs), urn=response.urn,
                parent=request.parent, provider=request.provider, protect=bool(request.protect),
                custom=bool(request.custom), dependencies=list(request.dependencies),
                ignore_changes=list(request.ignoreChanges), replace_on_changes=list(request.replaceOnChanges),
                id=registration.id if registration else "", state=registration.state if registration else {}))
        return response

    def ReadResource(self, request):
        response = super().ReadResource(request)
        self.registered.append(Registered(
            typ=request.type, name=request.name, inputs={}, urn=response.urn, parent=request.parent,
            provider=request.provider, protect=False, custom=True, dependencies=[], id=request.id))
        return response

    def RegisterResourceOutputs(self, request):
        outputs = pulumi.runtime.rpc.deserialize_properties(request.outputs) if request.outputs else {}
        self.component_outputs[request.urn] = _plain(outputs)
        return super().RegisterResourceOutputs(request)


def _plain(value: Any) -> Any:
    """Deserialized properties as plain JSON-like values."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, pulumi.FileAsset):
        path = Path(value.path).resolve()
        return {"fileAsset": path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)}
    return value


def _resolve(value: Any) -> Any:
    if isinstance(value, pulumi.Output):
        return _resolve(_sync_await(value.future()))
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_resolve(v) for v in value]
    return value


def run_under_mocks(program: Callable[[], Any], *, stack: str, config: dict[str, Any], account_id: str,
                    region: str = "us-east-1", peer_outputs: dict[str, dict] | None = None,
                    preview: bool = False) -> Run:
    """Run ``program`` as a Pulumi program; return what it declared and exported."""
    set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}, [])
    mocks = CloudMocks(stack, account_id, region, peer_outputs or {})
    monitor = RecordingMonitor(mocks)
    global LAST_MONITOR
    LAST_MONITOR = monitor  # what was declared, even when the program raised
    pulumi_settings.set_root_resource(None)  # a fresh stack per run
    logs: list[str] = []
    logger = _ListLogger(logs)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor,
                             logger=logger)
    pulumi_settings.SETTINGS.rpc_manager.clear()
    _sync_await(run_pulumi_func(program))
    root = pulumi_settings.get_root_resource()
    outputs = {k: _resolve(v) for k, v in getattr(root, "outputs", {}).items()}
    return Run(resources=monitor.registered, outputs=outputs, component_outputs=monitor.component_outputs,
               logs=logs)


class _ListLogger:
    """Collects pulumi.log messages (the mock engine logs through a logger)."""

    def __init__(self, sink: list[str]):
        self.sink = sink

    def debug(self, msg, *a):
        pass

    def info(self, msg, *a):
        self.sink.append(str(msg))

    warning = error = info


# --------------------------------------------------------------------------
# Stacks from their real config files


def stack_config(stack: str, overrides: dict[str, Any] | None = None, root: Path = ROOT) -> dict[str, Any]:
    """Config as the CLI would give it (model.stackfiles), with test overrides (None removes a key).

    ``root`` is the folder of the stack files: the project, or another stacks folder (examples/three-orgs).
    """
    config = load_stack_config(stack, root)
    for key, value in (overrides or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if value is None:
            config.pop(full, None)
        else:
            config[full] = value
    return config


def run_stack(stack: str, *, peer_outputs: dict[str, dict] | None = None,
              overrides: dict[str, Any] | None = None, preview: bool = False, root: Path = ROOT) -> Run:
    config = stack_config(stack, overrides, root)
    account = str(config[f"{PROJECT}:accountId"])
    region = str(config.get(f"{PROJECT}:region", "us-east-1"))

    def program():
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")

    return run_under_mocks(program, stack=stack, config=config, account_id=account, region=region,
                           peer_outputs=peer_outputs, preview=preview)


def stack_ref(stack: str) -> str:
    return f"organization/{PROJECT}/{stack}"
