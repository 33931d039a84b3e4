"""ScheduledQuery: one analysis template run every N minutes over the window each run covers.

An EventBridge rule (rate(N minutes)) invokes the smallest function that can do it,
lambdas/scheduled_query.py, with model/windows.py beside it. EventBridge Scheduler's universal targets
could call StartProtectedQuery directly, but a target's input is fixed text with the scheduled time
at most: the window's start, and the check that a window is started once (each run of a
differentially private template spends the budget again), need code. The function's role may start
this template in this membership and read its queries, nothing else; its logs are kept
``log_retention_days``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from components import iam
from components.iam_wait import service_role

LAMBDAS = Path(__file__).resolve().parent.parent / "lambdas"
WINDOWS = Path(__file__).resolve().parent.parent / "model" / "windows.py"


@dataclass
class ScheduledQueryArgs:
    organization: str
    account_id: str
    region: str
    membership_id: pulumi.Input[str]
    template: str
    template_arn: pulumi.Input[str]
    every_minutes: int
    window: str
    log_retention_days: int = 365
    iam_propagation_seconds: int = 30


class ScheduledQuery(pulumi.ComponentResource):
    function: aws.lambda_.Function

    def __init__(self, name: str, args: ScheduledQueryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cleanrooms:analyst:ScheduledQuery", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        function_name = f"{args.organization}-cleanrooms-every-{args.template}".replace("_", "-")[:64]
        log_group = aws.cloudwatch.LogGroup(f"{name}-logs", name=f"/aws/lambda/{function_name}",
                                            retention_in_days=args.log_retention_days, opts=child)
        role = service_role(
            f"{name}-function", organization=args.organization, purpose=f"every-{args.template}",
            description=f"Starts {args.template} every {args.every_minutes} minutes over its window",
            trust=iam.lambda_trust(args.account_id),
            policy=iam.scheduled_query_policy(region=args.region, account_id=args.account_id,
                                              membership_id=args.membership_id, template_arn=args.template_arn,
                                              log_group_arn=log_group.arn),
            iam_propagation_seconds=args.iam_propagation_seconds, parent=self)
        self.function = aws.lambda_.Function(
            f"{name}-function", name=function_name,
            description=f"Runs {args.template} over the last {args.window} (lambdas/scheduled_query.py)",
            runtime="python3.12", handler="scheduled_query.handler",
            code=pulumi.AssetArchive({"scheduled_query.py": pulumi.FileAsset(str(LAMBDAS / "scheduled_query.py")),
                                      "windows.py": pulumi.FileAsset(str(WINDOWS))}),
            role=role.role.arn, timeout=120, memory_size=128,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables={
                "MEMBERSHIP_ID": args.membership_id, "TEMPLATE_ARN": args.template_arn, "WINDOW": args.window}),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="Text", log_group=log_group.name),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*role.ready, log_group]))
        self.rule = aws.cloudwatch.EventRule(
            f"{name}-schedule", name=function_name, schedule_expression=f"rate({args.every_minutes} minutes)",
            description=f"{args.template} every {args.every_minutes} minutes", opts=child)
        aws.cloudwatch.EventTarget(f"{name}-target", rule=self.rule.name, arn=self.function.arn, opts=child)
        aws.lambda_.Permission(f"{name}-invoke", action="lambda:InvokeFunction", function=self.function.name,
                               principal="events.amazonaws.com", source_arn=self.rule.arn,
                               source_account=args.account_id, opts=child)
        self.register_outputs({"function": self.function.name, "rule": self.rule.name})
