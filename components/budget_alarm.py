"""An alarm when the collaboration's privacy budget runs low, for any member (the data owner first).

EventBridge (Clean Rooms' "Protected Query Succeeded" and "Protected Query
Failed" events, source aws.cleanrooms; EventBridge events reference,
events-ref-cleanrooms) and a schedule invoke lambdas/budget_metric.py, which
publishes the remaining share of each aggregation type as CloudWatch metrics;
a CloudWatch alarm on the lowest share notifies an SNS topic below
``below_percent``, and when the metric stops arriving (INSUFFICIENT_DATA: no
budget yet, or the function failing). The function's code is this repository's
file, packaged by Pulumi (an AssetArchive), so a changed file shows in the
preview as an update of the function.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_aws as aws

from components import iam
from components.iam_wait import service_role
from lambdas import budget_metric

CODE = Path(__file__).resolve().parent.parent / "lambdas" / "budget_metric.py"
EVENTS = ["Protected Query Succeeded", "Protected Query Failed"]


@dataclass
class BudgetAlarmArgs:
    organization: str
    account_id: str
    region: str
    collaboration_id: pulumi.Input[str]
    owner_account_id: str
    """The collaboration's creator: its ARN is in that account."""
    below_percent: int
    schedule_minutes: int
    emails: list[str] = field(default_factory=list)
    log_retention_days: int = 365
    iam_propagation_seconds: int = 30
    protect: bool = True


class BudgetAlarm(pulumi.ComponentResource):
    alarm: aws.cloudwatch.MetricAlarm
    topic: aws.sns.Topic

    def __init__(self, name: str, args: BudgetAlarmArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cleanrooms:governance:BudgetAlarm", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        function_name = f"{args.organization}-cleanrooms-budget-metric"[:64]
        log_group = aws.cloudwatch.LogGroup(f"{name}-logs", name=f"/aws/lambda/{function_name}",
                                            retention_in_days=args.log_retention_days, opts=child)
        role = service_role(
            f"{name}-function", organization=args.organization, purpose="budget-metric",
            description="Publishes the collaboration's remaining privacy budget as CloudWatch metrics",
            trust=iam.lambda_trust(args.account_id),
            policy=iam.budget_metric_policy(region=args.region, owner_account_id=args.owner_account_id,
                                            collaboration_id=args.collaboration_id, log_group_arn=log_group.arn,
                                            namespace=budget_metric.NAMESPACE),
            iam_propagation_seconds=args.iam_propagation_seconds, parent=self)
        self.function = aws.lambda_.Function(
            f"{name}-function",
            name=function_name,
            description="Clean Rooms privacy budget -> CloudWatch (lambdas/budget_metric.py)",
            runtime="python3.12",
            handler="budget_metric.handler",
            code=pulumi.AssetArchive({"budget_metric.py": pulumi.FileAsset(str(CODE))}),
            role=role.role.arn,
            timeout=60,
            memory_size=128,
            environment=aws.lambda_.FunctionEnvironmentArgs(variables={"COLLABORATION_ID": args.collaboration_id}),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="Text", log_group=log_group.name),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*role.ready, log_group]),
        )
        rules = {
            "query-ended": dict(event_pattern=json.dumps({"source": ["aws.cleanrooms"], "detail-type": EVENTS}),
                                description="A protected query ended: its aggregations were charged"),
            "schedule": dict(schedule_expression=f"rate({args.schedule_minutes} minutes)",
                             description="Budget check on a schedule (Clean Rooms events are best effort)"),
        }
        for suffix, spec in rules.items():
            rule = aws.cloudwatch.EventRule(f"{name}-{suffix}", name=f"{function_name}-{suffix}"[:64], **spec,
                                            opts=child)
            aws.cloudwatch.EventTarget(f"{name}-{suffix}-target", rule=rule.name, arn=self.function.arn, opts=child)
            aws.lambda_.Permission(f"{name}-{suffix}-invoke", action="lambda:InvokeFunction",
                                   function=self.function.name, principal="events.amazonaws.com",
                                   source_arn=rule.arn, source_account=args.account_id, opts=child)

        # CloudWatch alarms cannot publish to a topic under the AWS managed SNS key: a key of our own that
        # lets CloudWatch use it (SNS Developer Guide, "compatibility between event sources and encrypted topics").
        key = aws.kms.Key(f"{name}-topic-key", description=f"Encrypts {args.organization}'s budget alarm topic",
                          enable_key_rotation=True, deletion_window_in_days=30,
                          policy=iam.alarm_topic_key_policy(args.account_id),
                          opts=pulumi.ResourceOptions(parent=self, protect=args.protect))
        self.topic = aws.sns.Topic(f"{name}-topic", name=f"{args.organization}-cleanrooms-budget-alarm",
                                   kms_master_key_id=key.arn, opts=child)
        for i, email in enumerate(args.emails):
            aws.sns.TopicSubscription(f"{name}-email-{i}", topic=self.topic.arn, protocol="email", endpoint=email,
                                      opts=child)
        self.alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-alarm",
            name=f"{args.organization}-cleanrooms-privacy-budget-low",
            alarm_description=f"The collaboration's privacy budget: an aggregation type has less than "
                              f"{args.below_percent}% left (docs/governance.md)",
            namespace=budget_metric.NAMESPACE,
            metric_name=budget_metric.MIN_METRIC,
            dimensions={"CollaborationId": args.collaboration_id},
            statistic="Minimum",
            period=min(86400, args.schedule_minutes * 60),
            evaluation_periods=1,
            comparison_operator="LessThanThreshold",
            threshold=args.below_percent,
            # No data means no budget yet, or the function failing: said, not taken as fine.
            treat_missing_data="missing",
            alarm_actions=[self.topic.arn],
            insufficient_data_actions=[self.topic.arn],
            ok_actions=[self.topic.arn],
            opts=child,
        )
        self.register_outputs({"alarm": self.alarm.name, "topic": self.topic.arn, "function": self.function.name})
