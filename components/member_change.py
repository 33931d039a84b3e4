"""Adding a member to an existing collaboration by change request, not by replacing it.

A collaboration's `Members` is create-only (CloudFormation), so a member in the
Collaboration resource's inputs can only be added by replacing the
collaboration. Clean Rooms has an API for changes after creation instead
(botocore cleanrooms 2022-02-17): CreateCollaborationChangeRequest with a MEMBER
specification ({accountId, memberAbilities, displayName}; "CAN_QUERY and
CAN_RUN_JOB" are "currently not supported"); members APPROVE it, unless the
collaboration auto-approves that change type (AutoApprovedChangeTypes
ADD_MEMBER, set when it is created); then "the collaboration owner can [...]
COMMIT a change request" ("commit after the request is approved").
CloudFormation has no resource for it, so this is a Pulumi dynamic resource that
calls the API with the owner's credentials.

Create: request, wait for approval (polling with backoff under a deadline; auto
approval is immediate, otherwise the other members approve meanwhile), commit,
wait for COMMITTED. Delete: cancel a request that is still pending; a committed
member is not removed (the API has no such change), which the README says.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any, Callable

import pulumi
import pulumi.dynamic as dynamic

DONE = "COMMITTED"
REFUSED = ("DENIED", "CANCELLED")


class ChangeRequestError(Exception):
    pass


class ChangeRequestTimeout(ChangeRequestError):
    """The request did not reach the wanted status before the deadline."""


@dataclass(frozen=True)
class Credentials:
    """How the owner's stack reaches AWS (its providers' settings), for the change requests' API calls."""

    region: str
    profile: str | None = None
    assume_role_arn: str | None = None


@dataclass
class Poll:
    """Exponential backoff with jitter under one deadline (no fixed sleeps)."""

    timeout: float
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Any] = time.sleep
    first: float = 1.0
    cap: float = 15.0
    jitter: Callable[[], float] = lambda: random.uniform(0.8, 1.2)

    def until(self, fetch: Callable[[], dict], done: Callable[[dict], bool], what: str) -> dict:
        deadline, delay = self.clock() + self.timeout, self.first
        while True:
            state = fetch()
            if done(state):
                return state
            left = deadline - self.clock()
            if left <= 0:
                raise ChangeRequestTimeout(f"{what}: still {state.get('status')} after {self.timeout:g}s")
            self.sleep(min(left, delay * self.jitter()))
            delay = min(self.cap, delay * 2)


def add_member(client, collaboration_id: str, account_id: str, display_name: str, abilities: list[str],
               poll: Poll) -> dict:
    """Request the member, wait for approval, commit it; return the committed change request."""
    request = client.create_collaboration_change_request(
        collaborationIdentifier=collaboration_id,
        changes=[{"specificationType": "MEMBER", "specification": {"member": {
            "accountId": account_id, "memberAbilities": abilities, "displayName": display_name}}}],
    )["collaborationChangeRequest"]
    ident = {"collaborationIdentifier": collaboration_id, "changeRequestIdentifier": request["id"]}

    def fetch() -> dict:
        return client.get_collaboration_change_request(**ident)["collaborationChangeRequest"]

    def settled(state: dict) -> bool:
        if state["status"] in REFUSED:
            raise ChangeRequestError(f"change request {state['id']} adding {account_id} was {state['status']}")
        return state["status"] in ("APPROVED", DONE)

    try:
        state = request if settled(request) else poll.until(fetch, settled,
                                                            f"approval of change request {request['id']}")
    except ChangeRequestTimeout as exc:
        # A create that raises leaves Pulumi no state, so delete() could never cancel the
        # request; cancel it here, or the next `pulumi up` would open a second one.
        client.update_collaboration_change_request(**ident, action="CANCEL")
        raise ChangeRequestTimeout(f"{exc}; the request was cancelled: run `pulumi up` again when the members "
                                   "can approve it (or raise changeRequestTimeoutSeconds)") from None
    if state["status"] != DONE:
        client.update_collaboration_change_request(**ident, action="COMMIT")
        state = poll.until(fetch, lambda s: settled(s) and s["status"] == DONE,
                           f"commit of change request {request['id']}")
    return state


def account_client(props: dict, service: str, account_id: str, session_name: str):
    """A boto3 client with the stack's credentials (props: region, profile, assume_role_arn), refusing any other
    account: the same guard as the stack's providers (allowed_account_ids)."""
    import boto3

    session = boto3.Session(profile_name=props.get("profile") or None, region_name=props["region"])
    if props.get("assume_role_arn"):
        creds = session.client("sts").assume_role(RoleArn=props["assume_role_arn"],
                                                  RoleSessionName=session_name)["Credentials"]
        session = boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                                aws_session_token=creds["SessionToken"], region_name=props["region"])
    account = session.client("sts").get_caller_identity()["Account"]
    if account != account_id:
        raise ChangeRequestError(f"credentials are for account {account}, not this stack's {account_id}")
    return session.client(service)


def _client(props: dict):
    return account_client(props, "cleanrooms", props["owner_account_id"], "pulumi-cleanrooms-member-change")


class MemberChangeProvider(dynamic.ResourceProvider):
    def create(self, props: dict) -> dynamic.CreateResult:
        state = add_member(_client(props), props["collaboration_id"], props["account_id"], props["display_name"],
                           list(props["abilities"]), Poll(float(props["timeout_seconds"])))
        return dynamic.CreateResult(id_=state["id"], outs={**props, "status": state["status"],
                                                           "auto_approved": bool(state.get("isAutoApproved"))})

    def diff(self, _id: str, olds: dict, news: dict) -> dynamic.DiffResult:
        keys = ("collaboration_id", "account_id", "abilities", "display_name")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        return dynamic.DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=True)

    def delete(self, _id: str, props: dict) -> None:
        if props.get("status") != DONE:
            _client(props).update_collaboration_change_request(
                collaborationIdentifier=props["collaboration_id"], changeRequestIdentifier=_id, action="CANCEL")


class MemberChange(dynamic.Resource):
    """One member added to the collaboration by a committed change request."""

    status: pulumi.Output[str]

    def __init__(self, name: str, *, collaboration_id: pulumi.Input[str], account_id: str, display_name: str,
                 abilities: list[str], owner_account_id: str, credentials: Credentials, timeout_seconds: int,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__(MemberChangeProvider(), name, {
            "collaboration_id": collaboration_id, "account_id": account_id, "display_name": display_name,
            "abilities": abilities, "owner_account_id": owner_account_id, "region": credentials.region,
            "profile": credentials.profile, "assume_role_arn": credentials.assume_role_arn,
            "timeout_seconds": timeout_seconds, "status": None, "auto_approved": None}, opts)
