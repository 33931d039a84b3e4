"""The Clean Rooms ML calls behind a lookalike model, as Pulumi dynamic resources (components/lookalike.py).

CloudFormation has no types for audience models, configured audience models or
their associations; each is a dynamic resource calling the API with the stack's
credentials (as components/member_change.py does for change requests). The calls
take their client, so the tests drive them with botocore's Stubber.
"""

from __future__ import annotations

from typing import Any, Callable

import pulumi
import pulumi.dynamic as dynamic

from components.member_change import ChangeRequestTimeout, Credentials, Poll, account_client


class LookalikeError(Exception):
    pass


def create_audience_model(ml, props: dict) -> str:
    return ml.create_audience_model(name=props["name"], trainingDatasetArn=props["training_dataset_arn"],
                                    description=props["description"])["audienceModelArn"]


def wait_until_trained(ml, audience_model_arn: str, poll: Poll) -> dict:
    """The audience model once ACTIVE; LookalikeError if training failed, or the deadline passed first."""
    def fetch() -> dict:
        return ml.get_audience_model(audienceModelArn=audience_model_arn)

    def done(state: dict) -> bool:
        if state["status"] in ("CREATE_FAILED", "DELETE_FAILED", "DELETE_PENDING", "DELETE_IN_PROGRESS"):
            raise LookalikeError(f"audience model {audience_model_arn} is {state['status']}: "
                                 f"{state.get('statusDetails') or 'no details'}")
        return state["status"] == "ACTIVE"

    try:
        return poll.until(fetch, done, f"training of audience model {audience_model_arn}")
    except ChangeRequestTimeout as exc:
        raise LookalikeError(f"{exc}: training can take up to 24 hours (User Guide); run `pulumi up` again when "
                             f"`aws cleanroomsml get-audience-model --audience-model-arn {audience_model_arn}` says "
                             "ACTIVE") from None


def configured_model_request(props: dict) -> dict:
    return {
        "audienceModelArn": props["audience_model_arn"],
        "outputConfig": {"destination": {"s3Destination": {"s3Uri": props["output_uri"]}},
                         "roleArn": props["output_role_arn"]},
        "sharedAudienceMetrics": ["ALL" if props["share_metrics"] else "NONE"],
        "minMatchingSeedSize": int(props["min_matching_seed_size"]),
        "audienceSizeConfig": {"audienceSizeType": props["size_type"],
                               "audienceSizeBins": [int(b) for b in props["size_bins"]]},
        "description": props["description"],
    }


def create_configured_model(ml, props: dict, poll: Poll) -> str:
    wait_until_trained(ml, props["audience_model_arn"], poll)
    return ml.create_configured_audience_model(name=props["name"], childResourceTagOnCreatePolicy="FROM_PARENT_RESOURCE",
                                               **configured_model_request(props))["configuredAudienceModelArn"]


def associate(rooms, props: dict) -> dict:
    return rooms.create_configured_audience_model_association(
        membershipIdentifier=props["membership_id"], configuredAudienceModelArn=props["configured_model_arn"],
        configuredAudienceModelAssociationName=props["name"], manageResourcePolicies=True,
        description=props["description"])["configuredAudienceModelAssociation"]


# -- the dynamic resources ------------------------------------------------------------------------

def _client(props: dict, service: str):
    return account_client(props, service, props["account_id"], "pulumi-cleanrooms-lookalike")


class _Provider(dynamic.ResourceProvider):
    """Common to the three: a replacement when an input it cannot update changes, nothing otherwise."""

    replace_keys: tuple[str, ...] = ()
    update_keys: tuple[str, ...] = ()

    def __init__(self, client: Callable[[dict, str], Any] | None = None):
        self._make = client

    def client(self, props: dict, service: str):
        return (self._make or _client)(props, service)

    def diff(self, _id: str, olds: dict, news: dict) -> dynamic.DiffResult:
        replaces = [k for k in self.replace_keys if olds.get(k) != news.get(k)]
        updates = [k for k in self.update_keys if olds.get(k) != news.get(k)]
        return dynamic.DiffResult(changes=bool(replaces or updates), replaces=replaces, delete_before_replace=True)


class _AudienceModelProvider(_Provider):
    replace_keys = ("name", "training_dataset_arn", "account_id", "region")

    def create(self, props: dict) -> dynamic.CreateResult:
        arn = create_audience_model(self.client(props, "cleanroomsml"), props)
        return dynamic.CreateResult(id_=arn, outs={**props, "arn": arn})

    def delete(self, _id: str, props: dict) -> None:
        self.client(props, "cleanroomsml").delete_audience_model(audienceModelArn=_id)


class _ConfiguredModelProvider(_Provider):
    replace_keys = ("name", "account_id", "region")
    update_keys = ("audience_model_arn", "output_uri", "output_role_arn", "share_metrics", "min_matching_seed_size",
                   "size_type", "size_bins", "description")

    def create(self, props: dict) -> dynamic.CreateResult:
        arn = create_configured_model(self.client(props, "cleanroomsml"), props,
                                      Poll(60.0 * float(props["wait_minutes"]), cap=60.0))
        return dynamic.CreateResult(id_=arn, outs={**props, "arn": arn})

    def update(self, _id: str, olds: dict, news: dict) -> dynamic.UpdateResult:
        self.client(news, "cleanroomsml").update_configured_audience_model(configuredAudienceModelArn=_id,
                                                                           **configured_model_request(news))
        return dynamic.UpdateResult(outs={**news, "arn": _id})

    def delete(self, _id: str, props: dict) -> None:
        self.client(props, "cleanroomsml").delete_configured_audience_model(configuredAudienceModelArn=_id)


class _AssociationProvider(_Provider):
    replace_keys = ("name", "membership_id", "configured_model_arn", "account_id", "region")

    def create(self, props: dict) -> dynamic.CreateResult:
        made = associate(self.client(props, "cleanrooms"), props)
        return dynamic.CreateResult(id_=made["id"], outs={**props, "arn": made["arn"]})

    def delete(self, _id: str, props: dict) -> None:
        self.client(props, "cleanrooms").delete_configured_audience_model_association(
            configuredAudienceModelAssociationIdentifier=_id, membershipIdentifier=props["membership_id"])


def where(credentials: Credentials, account_id: str) -> dict:
    """The props that say where a dynamic resource calls: account (checked), region, credentials."""
    return {"account_id": account_id, "region": credentials.region, "profile": credentials.profile,
            "assume_role_arn": credentials.assume_role_arn}


class AudienceModel(dynamic.Resource):
    arn: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: pulumi.ResourceOptions | None = None):
        super().__init__(_AudienceModelProvider(), name, {**props, "arn": None}, opts)


class ConfiguredAudienceModel(dynamic.Resource):
    arn: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: pulumi.ResourceOptions | None = None):
        super().__init__(_ConfiguredModelProvider(), name, {**props, "arn": None}, opts)


class AudienceModelAssociation(dynamic.Resource):
    arn: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: pulumi.ResourceOptions | None = None):
        super().__init__(_AssociationProvider(), name, {**props, "arn": None}, opts)
