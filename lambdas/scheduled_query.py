"""Run one analysis template over the window a schedule tick covers, once (runs in AWS Lambda).

EventBridge invokes it every N minutes (components/scheduled_query.py); the event's ``time`` is the
scheduled time. The window is the last whole one of WINDOW before it (model/windows.py, packaged beside
this file), given to the template as window_start / window_end; the results go to the membership's
default result configuration.

Started once: EventBridge delivers at least once and Lambda retries a failed asynchronous invocation,
and each start of a differentially private template spends the budget again. So before starting, the
function looks at the membership's protected queries created since the window ended, and starts none
if one of them is this template over this window and has not failed. The start itself is never retried
by botocore: an answer lost after the query started would otherwise start a second one; the function
fails instead, and its retry finds the query. Every client has explicit connect and read timeouts,
the query runner's (``client_configs``).

Only the standard library and boto3, which the Lambda Python runtime provides.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import windows  # model/windows.py, packaged beside this file

RUNNING_OR_DONE = ("SUBMITTED", "STARTED", "CANCELLING", "SUCCESS", "TIMED_OUT")

# The query runner's network policy (queryrunner/cloud.py: Network, READ_ATTEMPTS, and reconcile.guard_starts for
# starts), restated because this file is deployed with windows.py alone (components/scheduled_query.py); the tests
# compare the two. Seconds to open a connection and to wait for an answer (botocore's default read timeout, which
# would otherwise apply with a 60 s connect timeout). Reads are safe to repeat: botocore's standard mode retries
# throttling, 5xx, resets and timeouts, 6 attempts in all. A start is sent once: StartProtectedQuery takes no
# idempotency token, so any failed start fails the invocation, and Lambda's retry lists before it starts again.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
READ_ATTEMPTS = 6
START_ATTEMPTS = 1


def started_already(cleanrooms, membership_id: str, template_arn: str, values: dict[str, str],
                    since: dt.datetime) -> str | None:
    """The id of a query of this template with these parameters created since ``since`` that has not failed."""
    pages = cleanrooms.get_paginator("list_protected_queries").paginate(membershipIdentifier=membership_id)
    for page in pages:
        for summary in page["protectedQueries"]:
            created = summary["createTime"]
            created = created if created.tzinfo else created.replace(tzinfo=dt.timezone.utc)
            if created < since.replace(tzinfo=dt.timezone.utc):
                return None  # listed newest first (as queryrunner/reconcile.py reads them): the rest are older
            if summary["status"] not in RUNNING_OR_DONE:
                continue
            query = cleanrooms.get_protected_query(membershipIdentifier=membership_id,
                                                   protectedQueryIdentifier=summary["id"])["protectedQuery"]
            sql = query.get("sqlParameters") or {}
            if sql.get("analysisTemplateArn") == template_arn and sql.get("parameters") == values:
                return summary["id"]
    return None


def run(cleanrooms, starts, membership_id: str, template_arn: str, length: dt.timedelta,
        scheduled: dt.datetime) -> dict[str, Any]:
    values = windows.parameters(length, scheduled)
    end = dt.datetime.strptime(values["window_end"], windows.TIMESTAMP_FORMAT)
    found = started_already(cleanrooms, membership_id, template_arn, values, end)
    if found:
        return {"status": "already started", "query": found, "window": values}
    answer = starts.start_protected_query(
        type="SQL", membershipIdentifier=membership_id,
        sqlParameters={"analysisTemplateArn": template_arn, "parameters": values})
    return {"status": "started", "query": answer["protectedQuery"]["id"], "window": values}


def client_configs():
    """(reads, starts): the botocore configs of the two clients, explicit timeouts on both."""
    from botocore.config import Config

    timeouts = {"connect_timeout": CONNECT_TIMEOUT, "read_timeout": READ_TIMEOUT,
                "user_agent_extra": "cleanrooms-scheduled-query"}
    return (Config(retries={"mode": "standard", "total_max_attempts": READ_ATTEMPTS}, **timeouts),
            Config(retries={"mode": "standard", "total_max_attempts": START_ATTEMPTS}, **timeouts))


def handler(event, _context):
    import boto3

    length = windows.parse_length(os.environ["WINDOW"])
    scheduled = dt.datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
    reads_config, starts_config = client_configs()
    reads = boto3.client("cleanrooms", config=reads_config)
    starts = boto3.client("cleanrooms", config=starts_config)
    return run(reads, starts, os.environ["MEMBERSHIP_ID"], os.environ["TEMPLATE_ARN"], length, scheduled)
