"""This member's Clean Rooms ML configuration, as a Pulumi dynamic resource (components/ml_output.py).

PutMLConfiguration gives a membership "the default Amazon S3 location where ML output is stored for
the specified member" and the role that writes there (botocore cleanroomsml), the role "used by Clean
Rooms ML to write all model metrics and logs to the member's AWS account during model training and
inference" (User Guide, custom-model-prerequisites). CloudFormation has no type for it, so this calls the
API with the stack's credentials, as components/lookalike_api.py does; the calls take their client, so
the tests drive them with botocore's Stubber.
"""

from __future__ import annotations

from typing import Any, Callable

import pulumi
import pulumi.dynamic as dynamic

from components.member_change import Credentials, account_client


def request(props: dict) -> dict:
    return {"membershipIdentifier": props["membership_id"],
            "defaultOutputLocation": {"destination": {"s3Destination": {"s3Uri": props["output_uri"]}},
                                      "roleArn": props["role_arn"]}}


def put(ml, props: dict) -> None:
    ml.put_ml_configuration(**request(props))


def delete(ml, props: dict) -> None:
    """The membership keeps no ML output location: later output has nowhere to go (nothing is deleted)."""
    try:
        ml.delete_ml_configuration(membershipIdentifier=props["membership_id"])
    except ml.exceptions.ResourceNotFoundException:
        pass  # already gone


class _Provider(dynamic.ResourceProvider):
    def __init__(self, client: Callable[[dict], Any] | None = None):
        self._client = client

    def _ml(self, props: dict):
        if self._client is not None:
            return self._client(props)
        return account_client(props, "cleanroomsml", props["account_id"], "pulumi-cleanrooms-ml-configuration")

    def create(self, props: dict) -> dynamic.CreateResult:
        put(self._ml(props), props)
        return dynamic.CreateResult(id_=props["membership_id"], outs=props)

    def diff(self, _id: str, olds: dict, news: dict) -> dynamic.DiffResult:
        changed = [k for k in ("output_uri", "role_arn") if olds.get(k) != news.get(k)]
        replaces = [k for k in ("membership_id", "account_id") if olds.get(k) != news.get(k)]
        return dynamic.DiffResult(changes=bool(changed or replaces), replaces=replaces,
                                  delete_before_replace=bool(replaces))

    def update(self, _id: str, olds: dict, news: dict) -> dynamic.UpdateResult:
        put(self._ml(news), news)  # a put replaces the configuration in place
        return dynamic.UpdateResult(outs=news)

    def delete(self, _id: str, props: dict) -> None:
        delete(self._ml(props), props)


class MLConfiguration(dynamic.Resource):
    """PutMLConfiguration of a membership: where its ML output goes, and the role that writes it."""

    def __init__(self, name: str, *, membership_id: pulumi.Input[str], output_uri: pulumi.Input[str],
                 role_arn: pulumi.Input[str], account_id: str, credentials: Credentials,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__(_Provider(), name, {
            "api": "PutMLConfiguration",  # what offline/deployer_policy.py knows this resource by
            "membership_id": membership_id, "output_uri": output_uri, "role_arn": role_arn, "account_id": account_id,
            "region": credentials.region, "profile": credentials.profile,
            "assume_role_arn": credentials.assume_role_arn}, opts)
