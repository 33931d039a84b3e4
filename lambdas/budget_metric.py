"""What is left of a collaboration's privacy budget, as CloudWatch metrics (runs in AWS Lambda).

Invoked by EventBridge when a protected query ends (source aws.cleanrooms,
"Protected Query Succeeded" / "Protected Query Failed": EventBridge events
reference, events-ref-cleanrooms) and on a schedule (those events are "best
effort", and which member's account receives them is not documented). It reads
ListCollaborationPrivacyBudgets (the collaboration-wide view any member has) and
publishes, in namespace NAMESPACE:

- ``RemainingPercent`` per aggregation type (dimensions CollaborationId, Aggregation);
- ``MinRemainingPercent``, the lowest of them (dimension CollaborationId): the alarm's metric.

Only the standard library and boto3, which the Lambda Python runtime provides.
"""

from __future__ import annotations

import os
from typing import Any

NAMESPACE = "CleanRooms/PrivacyBudget"
MIN_METRIC = "MinRemainingPercent"
METRIC = "RemainingPercent"
BATCH = 1000  # PutMetricData takes at most 1000 values per request
# Explicit timeouts (botocore's defaults are 60 s each): a reading that hangs is cut short and retried, all within
# the function's 60 s timeout (components/budget_alarm.py). Both calls may be repeated safely: a listing reads, and
# a metric published twice is the same gauge value at the same time.
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 10.0
ATTEMPTS = 3


def remaining(cleanrooms, collaboration_id: str) -> dict[str, float]:
    """Aggregation type -> the lowest remaining share (percent) over the collaboration's DP budgets."""
    lowest: dict[str, float] = {}
    pages = cleanrooms.get_paginator("list_collaboration_privacy_budgets").paginate(
        collaborationIdentifier=collaboration_id, privacyBudgetType="DIFFERENTIAL_PRIVACY")
    for page in pages:
        for summary in page["collaborationPrivacyBudgetSummaries"]:
            for aggregation in ((summary.get("budget") or {}).get("differentialPrivacy") or {}).get("aggregations", []):
                share = 100.0 * aggregation["remainingCount"] / aggregation["maxCount"] if aggregation["maxCount"] else 0.0
                kind = aggregation["type"]
                lowest[kind] = min(share, lowest.get(kind, 100.0))
    return lowest


def metric_data(collaboration_id: str, shares: dict[str, float]) -> list[dict[str, Any]]:
    collaboration = {"Name": "CollaborationId", "Value": collaboration_id}
    data = [{"MetricName": METRIC, "Dimensions": [collaboration, {"Name": "Aggregation", "Value": kind}],
             "Value": share, "Unit": "Percent"} for kind, share in sorted(shares.items())]
    if shares:
        data.append({"MetricName": MIN_METRIC, "Dimensions": [collaboration], "Value": min(shares.values()),
                     "Unit": "Percent"})
    return data


def publish(cleanrooms, cloudwatch, collaboration_id: str) -> dict[str, Any]:
    shares = remaining(cleanrooms, collaboration_id)
    data = metric_data(collaboration_id, shares)
    for start in range(0, len(data), BATCH):
        cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=data[start:start + BATCH])
    # With no budget yet nothing is published: the alarm shows INSUFFICIENT_DATA, and says so.
    return {"collaboration": collaboration_id, "aggregations": shares,
            "lowest": min(shares.values()) if shares else None}


def client_config():
    """The botocore config of both clients: explicit connect and read timeouts, standard retries."""
    from botocore.config import Config

    return Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT, user_agent_extra="cleanrooms-budget-metric",
                  retries={"mode": "standard", "total_max_attempts": ATTEMPTS})


def handler(event: dict, context: Any) -> dict[str, Any]:
    import boto3

    config = client_config()
    return publish(boto3.client("cleanrooms", config=config), boto3.client("cloudwatch", config=config),
                   os.environ["COLLABORATION_ID"])
