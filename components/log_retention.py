"""A retention period for the Clean Rooms query and job log groups of this account.

"AWS Clean Rooms creates log groups for collaborations after each collaboration
member creates a membership" (User Guide, receiving-query-logs), so the program
cannot create them itself (a LogGroup resource would fail as "already exists",
or race the service), and their names are not documented; AWS's managed policy
for Clean Rooms scopes its log permissions to ``log-group:/aws/cleanrooms*``.
This dynamic resource, after the membership exists, waits (backoff, deadline)
for the service's log groups under that prefix and puts the retention on each.
If none had appeared within the wait, the next `pulumi up` tries again (``diff``
asks for an update while no group was found); after that only a change of
its settings does, so an up with nothing to do stays a no-op.
CloudWatch Logs keeps log events forever unless a retention is set.
"""

from __future__ import annotations

from typing import Any, Callable

import pulumi
import pulumi.dynamic as dynamic

from components.member_change import ChangeRequestTimeout, Credentials, Poll, account_client

PREFIX = "/aws/cleanrooms"


def apply_retention(logs, days: int, poll: Poll) -> list[str]:
    """Put ``days`` on every log group under PREFIX; wait for the first one until the poll's deadline."""

    def groups() -> dict[str, Any]:
        found = []
        for page in logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=PREFIX):
            found += [g["logGroupName"] for g in page.get("logGroups", [])]
        return {"status": f"{len(found)} log group(s)", "names": found}

    try:
        names = poll.until(groups, lambda state: bool(state["names"]), f"Clean Rooms log groups under {PREFIX}")["names"]
    except ChangeRequestTimeout:
        return []  # none yet: the next `pulumi up` applies it
    for name in names:
        logs.put_retention_policy(logGroupName=name, retentionInDays=days)
    return sorted(names)


class _Provider(dynamic.ResourceProvider):
    def __init__(self, client: Callable[[dict], Any] | None = None):
        self._client = client

    def _logs(self, props: dict):
        if self._client is not None:
            return self._client(props)
        return account_client(props, "logs", props["account_id"], "pulumi-cleanrooms-log-retention")

    def _apply(self, props: dict) -> dict:
        names = apply_retention(self._logs(props), int(props["days"]), Poll(float(props["wait_seconds"])))
        return {**props, "log_groups": names}

    def create(self, props: dict) -> dynamic.CreateResult:
        return dynamic.CreateResult(id_=f"{props['account_id']}-{PREFIX}", outs=self._apply(props))

    def diff(self, _id: str, olds: dict, news: dict) -> dynamic.DiffResult:
        # An update when the settings change, or while no log group has been found yet (the service had not
        # created it within the wait): otherwise nothing, so a `pulumi up` after the rounds changes nothing.
        keys = ("days", "account_id", "region", "profile", "assume_role_arn", "wait_seconds")
        changed = any(olds.get(k) != news.get(k) for k in keys) or not olds.get("log_groups")
        return dynamic.DiffResult(changes=changed)

    def update(self, _id: str, olds: dict, news: dict) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(outs=self._apply(news))

    def delete(self, _id: str, props: dict) -> None:
        """Leaves the retention in place: removing it would keep logs forever, the less safe side."""


class LogRetention(dynamic.Resource):
    """The retention of this account's Clean Rooms log groups (the names it applied to, ``log_groups``)."""

    log_groups: pulumi.Output[list]

    def __init__(self, name: str, *, days: int, account_id: str, credentials: Credentials, wait_seconds: int,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__(_Provider(), name, {
            "days": days, "account_id": account_id, "region": credentials.region, "profile": credentials.profile,
            "assume_role_arn": credentials.assume_role_arn, "wait_seconds": wait_seconds, "log_groups": None}, opts)
