"""`ml channel|train|infer|export|status`: a custom model's life in the collaboration (Clean Rooms ML).

Custom modeling, as the User Guide lays it out (working-with-custom-models): "Read the data from the data
provider accounts to generate the ML input channel that is used for training or inference", "Run the ML
training job", "(Optional) Export the trained model artifacts to the results receiver", "(Optional) Run the
ML inference job". The member who can query does these ("Run queries - assigned to the member who will
initiate model training", create-custom-ml-collaboration), from its stack with ``mlTraining: true``: its
outputs give the channel role, the key and ``custom_models`` (each member's configured model algorithm
association, the provider's own or read through its stack reference). Each command checks its inputs
first (exit 2, nothing sent), starts one job (never retried by botocore: a second start would be a
second, billed job) and follows it with backoff under --timeout.
"""
from __future__ import annotations

import fnmatch
import re

from queryrunner import EXIT_INTERRUPTED, EXIT_OK, EXIT_QUERY_FAILED, UsageError
from queryrunner import params as qparams
from queryrunner.audience import _NAME, DONE, follow, guard
from queryrunner.outputs import OutputsError

STARTS = ("CreateMLInputChannel", "CreateTrainedModel", "StartTrainedModelInferenceJob", "StartTrainedModelExportJob")
_ARN = re.compile(r"^arn:aws[-a-z]*:cleanrooms-ml:[-a-z0-9]+:[0-9]{12}:membership/[0-9a-f-]{36}/"
                  r"(ml-input-channel|trained-model|trained-model-inference-job)/[-a-zA-Z0-9_/.]+$")
_ACCOUNT = re.compile(r"^[0-9]{12}$")


def instance_types(shape: str) -> list[str]:
    """The instance types the installed botocore model lists (InstanceType, InferenceInstanceType)."""
    import botocore.session

    return list(botocore.session.get_session().get_service_model("cleanroomsml").shape_for(shape).enum)


def bounds(shape: str, member: str) -> tuple[int, int]:
    """(min, max) of a numeric member as the installed botocore model gives them (ResourceConfig.instanceCount)."""
    import botocore.session

    found = botocore.session.get_session().get_service_model("cleanroomsml").shape_for(shape).members[member].metadata
    return int(found["min"]), int(found["max"])


def check_range(flag: str, value: int, shape: str, member: str, scale: int = 1) -> None:
    low, high = bounds(shape, member)
    low, high = -(-low // scale), high // scale  # whole units of ``scale`` within the model's range
    if not low <= value <= high:
        raise UsageError(f"{flag} must be {low} to {high} ({shape}.{member}), got {value}")


def arn_kind(value: str, flag: str, wanted: str | None = None) -> str:
    found = _ARN.match(value or "")
    if not found or (wanted and found.group(1) != wanted):
        what = f"a {wanted} ARN" if wanted else "an ML input channel, trained model or inference job ARN"
        raise UsageError(f"{flag} must be {what} (arn:aws:cleanrooms-ml:<region>:<account>:membership/<id>/...), "
                         f"got {value!r}")
    return found.group(1)


class MLCommand:
    def __init__(self, app):
        self.app, self.args, self.settings = app, app.args, app.settings

    def model(self) -> dict:
        """The chosen member's custom model (--provider, needed when members offer several), with this
        member's channel role and key."""
        s = self.settings
        key = s.get("ml_kms_key_arn")
        if not key:
            raise OutputsError("stack output 'ml_kms_key_arn' is missing: run `ml` from the stack of the member "
                               "who can query, with mlTraining: true (docs/clean-rooms-ml.md)")
        models = {name: m for name, m in (s.get("custom_models") or {}).items()
                  if isinstance(m, dict) and m.get("association_arn")}
        if not models:
            raise OutputsError("stack output 'custom_models' is empty: no member offers a custom model yet (the "
                               "provider's customModel needs imagesPushed: true and a membership)")
        chosen = getattr(self.args, "provider", None)
        if chosen is None and len(models) > 1:
            raise UsageError(f"--provider MEMBER: members offer several custom models ({', '.join(sorted(models))})")
        if chosen is not None and chosen not in models:
            raise UsageError(f"--provider {chosen!r} offers no custom model; those that do: "
                             f"{', '.join(sorted(models))}")
        model = models[chosen or next(iter(models))]
        return {**model, "kms_key_arn": key, "channel_role_arn": s.get("ml_channel_role_arn")}

    def checked_name(self) -> str:
        if not _NAME.match(self.args.name or ""):
            raise UsageError(f"ml {self.args.ml_action} NAME: {self.args.name!r} must be 1-63 letters, digits, '_', "
                             "'.' or '-', starting with a letter or digit")
        return self.args.name

    def client(self):
        client = self.app.client("cleanroomsml")
        guard(client, STARTS)
        return client

    def finish(self, what: str, fetch, done: str) -> int:
        try:
            state = follow(self.app, what, fetch, self.args.timeout)
        except KeyboardInterrupt:
            self.app.err(f"interrupted: {what} keeps running; `python -m queryrunner ml status ...` follows it")
            return EXIT_INTERRUPTED
        if state.get("timed_out"):
            self.app.err(f"{what} not finished at the deadline (--timeout); `ml status` follows it")
            return EXIT_QUERY_FAILED
        if state["status"] != DONE:
            details = state.get("statusDetails") or {}
            self.app.err(f"{what} {state['status']}: {details.get('statusCode')}: {details.get('message')}")
            return EXIT_QUERY_FAILED
        print(done, file=self.app.stdout)
        return EXIT_OK

    # -- commands -------------------------------------------------------------------------------------
    def channel(self) -> int:
        args, s = self.args, self.settings
        name, model = self.checked_name(), self.model()
        check_range("--retention-days", args.retention_days, "CreateMLInputChannelRequest", "retentionInDays")
        template = s.template(args.template)
        values = qparams.resolve(template.name, template.parameters, qparams.parse_assignments(args.param))
        self.check_additional_analyses(template, model["association_arn"])
        if not model.get("channel_role_arn"):
            raise OutputsError("stack output 'ml_channel_role_arn' is missing: deploy the stack with its "
                               "membership first")
        ml, membership = self.client(), s.membership_id
        arn = ml.create_ml_input_channel(
            membershipIdentifier=membership, name=name, retentionInDays=args.retention_days,
            configuredModelAlgorithmAssociations=[model["association_arn"]],
            inputChannel={"dataSource": {"protectedQueryInputParameters": {"sqlParameters": {
                "analysisTemplateArn": template.arn, "parameters": values}}}, "roleArn": model["channel_role_arn"]},
            kmsKeyArn=model["kms_key_arn"])["mlInputChannelArn"]
        self.app.err(f"ML input channel {arn} created from template {template.name}")
        return self.finish(f"channel {name}", lambda: ml.get_ml_input_channel(mlInputChannelArn=arn,
                                                                              membershipIdentifier=membership),
                           f"channel {name}: ACTIVE ({arn})")

    def train(self) -> int:
        args, s = self.args, self.settings
        name, model = self.checked_name(), self.model()
        arn_kind(args.channel, "--channel", "ml-input-channel")
        allowed = instance_types("InstanceType")
        if args.instance_type not in allowed:
            raise UsageError(f"--instance-type {args.instance_type!r} is not a training instance type; e.g. "
                             f"{', '.join(allowed[:6])} ... ({len(allowed)} in all)")
        check_range("--instances", args.instances, "ResourceConfig", "instanceCount")
        check_range("--volume-gb", args.volume_gb, "ResourceConfig", "volumeSizeInGB")
        check_range("--max-hours", args.max_hours, "StoppingCondition", "maxRuntimeInSeconds", scale=3600)
        ml, membership = self.client(), s.membership_id
        made = ml.create_trained_model(
            membershipIdentifier=membership, name=name, configuredModelAlgorithmAssociationArn=model["association_arn"],
            resourceConfig={"instanceType": args.instance_type, "instanceCount": args.instances,
                            "volumeSizeInGB": args.volume_gb},
            dataChannels=[{"mlInputChannelArn": args.channel, "channelName": "train"}],
            stoppingCondition={"maxRuntimeInSeconds": args.max_hours * 3600}, kmsKeyArn=model["kms_key_arn"])
        arn = made["trainedModelArn"]
        self.app.err(f"training {arn} started")
        return self.finish(f"training {name}", lambda: ml.get_trained_model(trainedModelArn=arn,
                                                                           membershipIdentifier=membership),
                           f"model {name}: ACTIVE ({arn})")

    def infer(self) -> int:
        args, s = self.args, self.settings
        name, model = self.checked_name(), self.model()
        arn_kind(args.model, "--model", "trained-model")
        arn_kind(args.channel, "--channel", "ml-input-channel")
        allowed = instance_types("InferenceInstanceType")
        if args.instance_type not in allowed:
            raise UsageError(f"--instance-type {args.instance_type!r} is not an inference instance type; e.g. "
                             f"{', '.join(allowed[:6])} ...")
        check_range("--instances", args.instances, "InferenceResourceConfig", "instanceCount")
        receivers = self.receivers()
        ml, membership = self.client(), s.membership_id
        arn = ml.start_trained_model_inference_job(
            membershipIdentifier=membership, name=name, trainedModelArn=args.model,
            configuredModelAlgorithmAssociationArn=model["association_arn"],
            resourceConfig={"instanceType": args.instance_type, "instanceCount": args.instances},
            outputConfiguration={"members": [{"accountId": a} for a in receivers], "accept": "text/csv"},
            dataSource={"mlInputChannelArn": args.channel}, kmsKeyArn=model["kms_key_arn"])["trainedModelInferenceJobArn"]
        self.app.err(f"inference {arn} started")
        return self.finish(f"inference {name}", lambda: ml.get_trained_model_inference_job(
            trainedModelInferenceJobArn=arn, membershipIdentifier=membership),
            f"inference {name}: ACTIVE, output to {', '.join(receivers)} ({arn})")

    def export(self) -> int:
        args, s = self.args, self.settings
        name = self.checked_name()
        self.model()
        arn_kind(args.model, "--model", "trained-model")
        receivers = self.receivers()
        ml = self.client()
        ml.start_trained_model_export_job(name=name, trainedModelArn=args.model, membershipIdentifier=s.membership_id,
                                          outputConfiguration={"members": [{"accountId": a} for a in receivers]})
        print(f"export {name} of {args.model} started, to {', '.join(receivers)}", file=self.app.stdout)
        return EXIT_OK

    def status(self) -> int:
        kind = arn_kind(self.args.arn, "ml status ARN")
        ml, membership = self.client(), self.settings.membership_id
        get = {"ml-input-channel": lambda: ml.get_ml_input_channel(mlInputChannelArn=self.args.arn,
                                                                    membershipIdentifier=membership),
               "trained-model": lambda: ml.get_trained_model(trainedModelArn=self.args.arn, membershipIdentifier=membership),
               "trained-model-inference-job": lambda: ml.get_trained_model_inference_job(
                   trainedModelInferenceJobArn=self.args.arn, membershipIdentifier=membership)}[kind]
        state = get()
        details = state.get("statusDetails") or {}
        print(f"{kind} {state.get('name')}: {state['status']}"
              + (f" ({details.get('statusCode')}: {details.get('message')})" if details else ""), file=self.app.stdout)
        return EXIT_OK if state["status"] not in ("CREATE_FAILED", "CANCEL_FAILED") else EXIT_QUERY_FAILED

    def check_additional_analyses(self, template, association: str) -> None:
        """Every table the template reads must let Clean Rooms ML use its query output: its rule's
        additionalAnalyses not NOT_ALLOWED, and its association's allowedAdditionalAnalyses matching this
        model's association ("The list of resources or wildcards (ARNs) that are allowed to perform
        additional analysis on query output", botocore ConfiguredTableAssociationAnalysisRuleCustom)."""
        rules = template.additional_analyses
        if rules is None:
            self.app.err(f"note: the stack does not export template {template.name!r}'s additional-analyses rules "
                         "(deploy it again to have them checked here); Clean Rooms checks them")
            return
        for table, mode, allowed in rules:
            if mode == "NOT_ALLOWED":
                raise UsageError(f"template {template.name!r} reads table {table!r}, whose analysis rule does not "
                                 "let Clean Rooms ML use its output (additionalAnalyses NOT_ALLOWED); its owner "
                                 "sets analysisRule.additionalAnalyses: ALLOWED and allowedAdditionalAnalyses")
            if not any(fnmatch.fnmatchcase(association, pattern) for pattern in allowed):
                listed = ", ".join(allowed) if allowed else "none"
                raise UsageError(f"template {template.name!r} reads table {table!r}, whose association allows "
                                 f"additional analyses by {listed}, not this model's association {association}; "
                                 "its owner adds it to analysisRule.allowedAdditionalAnalyses")
        known = {table for table, _, _ in rules}
        unknown = sorted(set(template.tables or ()) - known)
        if unknown:
            self.app.err(f"note: the rules of {', '.join(unknown)} are not known to this stack; Clean Rooms checks "
                         "them")

    def receivers(self) -> list[str]:
        accounts = list(dict.fromkeys(self.args.to or []))
        if not accounts:
            raise UsageError("--to ACCOUNT: give the member account(s) that receive the output (the collaboration's "
                             "ML abilities decide who may)")
        for account in accounts:
            if not _ACCOUNT.match(account):
                raise UsageError(f"--to {account!r} must be a 12-digit AWS account id")
        return accounts


def run(app, action: str) -> int:
    return getattr(MLCommand(app), action)()
