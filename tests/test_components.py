"""Each component in isolation, under mocks, asserting the properties it promises."""

from __future__ import annotations

import json


from components.analyst import Analyst, AnalystArgs
from components.collaboration_owner import CollaborationOwner, CollaborationOwnerArgs
from model.config import AnalysisRuleSpec, C3rSpec, CollaborationSpec, Member as MemberSpec, Partner
from components.data_producer import DataProducer, DataProducerArgs
from model.datasets import load_dataset
from components.membership import Member, MemberArgs, ResultDestination
from model.templates import load_queries
from components.results_store import ResultsStore, ResultsStoreArgs
from components.secure_bucket import SecureBucket, SecureBucketArgs
from tests.harness import ROOT, Run, run_under_mocks

ACCOUNT, PARTNER = "111111111111", "222222222222"
MEMBERSHIP_ID = "0b5a9f56-6d0f-4a48-9d7f-6a1f35b7c7a1"
MEMBERSHIP_ARN = f"arn:aws:cleanrooms:us-east-1:{ACCOUNT}:membership/{MEMBERSHIP_ID}"
PARTNER_ARN = f"arn:aws:cleanrooms:us-east-1:{PARTNER}:membership/9f0d1f8e-3b7c-4a55-8d0e-2f1f4f2a9b10"
QUERY_RUNNER = MEMBERSHIP_ID  # org A is the analyst


def run(build) -> Run:
    return run_under_mocks(build, stack="unit", config={}, account_id=ACCOUNT)


def doc(resource, key="policy") -> dict:
    return json.loads(resource.inputs[key])


def assert_children_of(result: Run, component_type: str):
    component = result.one(component_type)
    children = [r for r in result.resources if r.parent == component.urn]
    assert children, f"{component_type} declared no children"
    for child in children:
        assert child.name.startswith(component.name + "-"), f"{child.name} not named after {component.name}"
    return component, children


# --------------------------------------------------------------------------

def test_secure_bucket_is_hardened():
    result = run(lambda: SecureBucket("data", SecureBucketArgs("my-bucket", "test data", protect=True)))
    bucket = result.one("aws:s3/bucket:Bucket")
    assert bucket.protect and bucket.inputs["bucket"] == "my-bucket"
    key = result.one("aws:kms/key:Key")
    assert key.protect and key.inputs["enableKeyRotation"] is True
    encryption = result.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    rule = encryption.inputs["rules"][0]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": key.state["arn"]}
    assert rule["bucketKeyEnabled"] is True
    assert result.one("aws:s3/bucketVersioning:BucketVersioning").input("versioningConfiguration.status") == "Enabled"
    block = result.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                          "restrictPublicBuckets"))
    assert result.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls").input(
        "rule.objectOwnership") == "BucketOwnerEnforced"
    policy = result.one("aws:s3/bucketPolicy:BucketPolicy")
    statement = doc(policy)["Statement"][0]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == ["arn:aws:s3:::my-bucket", "arn:aws:s3:::my-bucket/*"]
    # The deny policy waits for the public access block.
    block_urn = result.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").urn
    assert block_urn in policy.dependencies
    assert_children_of(result, "cleanrooms:storage:SecureBucket")


def _producer(rule: AnalysisRuleSpec, **kwargs):
    dataset = load_dataset("retail_purchases")
    args = dict(organization="org-a", account_id=ACCOUNT, region="us-east-1", dataset=dataset, rule=rule,
                bucket_name="org-a-data", allowed_analyses=["ANY_QUERY"], allowed_analysis_providers=[ACCOUNT],
                member_account_ids=[ACCOUNT, PARTNER], result_receivers=[ACCOUNT])
    args.update(kwargs)
    return lambda: DataProducer("producer", DataProducerArgs(**args))


THRESHOLD_RULE = AnalysisRuleSpec(type="CUSTOM", allowed_analyses="ANY_QUERY", threshold_column="customer_key",
                                  threshold_minimum=3, disallowed_output_columns=("customer_key",))


def test_data_producer_before_joining_has_no_role_or_association():
    result = run(_producer(THRESHOLD_RULE))
    assert result.of_type("aws:iam/role:Role") == []
    assert result.of_type("aws-native:cleanrooms:ConfiguredTableAssociation") == []
    table = result.one("aws-native:cleanrooms:ConfiguredTable")
    custom = table.input("analysisRules.0.policy.v1.custom")
    assert custom["aggregationThresholds"] == [{"type": "COUNT_DISTINCT", "identityColumns": ["customer_key"],
                                                "minimumIdentityCount": 3,
                                                "allowedAggregateExpressionType": "COLUMNS_ONLY"}]
    assert custom["disallowedOutputColumns"] == ["customer_key"]
    assert table.inputs["analysisMethod"] == "DIRECT_QUERY"


def test_data_producer_role_is_least_privilege_with_confused_deputy_conditions():
    result = run(_producer(THRESHOLD_RULE, membership_id=MEMBERSHIP_ID,
                           trusted_membership_arns=[MEMBERSHIP_ARN, PARTNER_ARN],
                           query_runner_membership_id=QUERY_RUNNER))
    role = result.one("aws:iam/role:Role")
    assert role.inputs["path"] == "/service-role/" and "cleanrooms" in role.inputs["name"]
    # The confused-deputy page's two statements: the query runner by sts:ExternalId, every
    # member's membership by aws:SourceArn; both bounded to the members' accounts here.
    by_external_id, by_source_arn = doc(role, "assumeRolePolicy")["Statement"]
    for trust in (by_external_id, by_source_arn):
        assert trust["Principal"] == {"Service": "cleanrooms.amazonaws.com"}
        assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": [ACCOUNT, PARTNER]}
    assert by_external_id["Condition"]["StringLike"] == {
        "sts:ExternalId": f"arn:aws:*:us-east-1:*:dbuser:*/{QUERY_RUNNER}*"}
    assert by_source_arn["Condition"]["ForAnyValue:ArnEquals"] == {"aws:SourceArn": [MEMBERSHIP_ARN, PARTNER_ARN]}

    statements = {s["Sid"]: s for s in doc(result.one("aws:iam/rolePolicy:RolePolicy"))["Statement"]}
    assert statements["ReadThisPrefix"]["Resource"] == ["arn:aws:s3:::org-a-data/datasets/retail_purchases/*"]
    assert statements["ReadThisGlueTable"]["Resource"] == [
        "arn:aws:glue:us-east-1:111111111111:catalog",
        "arn:aws:glue:us-east-1:111111111111:database/org_a_retail_purchases",
        "arn:aws:glue:us-east-1:111111111111:table/org_a_retail_purchases/retail_purchases"]
    key_arn = result.one("aws:kms/key:Key").state["arn"]
    assert statements["DecryptThisBucketsObjects"]["Resource"] == [key_arn]
    assert statements["DecryptThisBucketsObjects"]["Action"] == ["kms:Decrypt"]
    for statement in statements.values():
        assert "*" not in statement["Resource"] and not any(a.endswith(":*") for a in statement["Action"])

    association = result.one("aws-native:cleanrooms:ConfiguredTableAssociation")
    assert association.inputs["roleArn"] == role.state["arn"]
    assert association.inputs["membershipIdentifier"] == MEMBERSHIP_ID
    # The association waits for IAM to propagate the role and its policy (components/iam_wait.py).
    wait = result.one("time:index/sleep:Sleep")
    assert wait.inputs == {"createDuration": "30s", "triggers": {"role": role.state["arn"]}}
    assert set(wait.dependencies) == {role.urn, result.one("aws:iam/rolePolicy:RolePolicy").urn}
    assert wait.urn in association.dependencies
    assert result.one("aws:s3/bucketObjectv2:BucketObjectv2").urn in association.dependencies
    assert_children_of(result, "cleanrooms:roles:DataProducer")


def test_no_wait_when_the_propagation_delay_is_zero():
    result = run(_producer(THRESHOLD_RULE, membership_id=MEMBERSHIP_ID, trusted_membership_arns=[MEMBERSHIP_ARN],
                           iam_propagation_seconds=0))
    assert result.of_type("time:index/sleep:Sleep") == []
    association = result.one("aws-native:cleanrooms:ConfiguredTableAssociation")
    assert result.one("aws:iam/rolePolicy:RolePolicy").urn in association.dependencies


def test_data_producer_aggregation_and_list_rules():
    aggregation = AnalysisRuleSpec(
        type="AGGREGATION", join_columns=("customer_key",), dimension_columns=("region", "age_group"),
        aggregate_columns=(("COUNT_DISTINCT", ("customer_key",)), ("AVG", ("purchase_amount",))),
        scalar_functions=("ROUND",), output_constraints=(("customer_key", 3),), join_required=True)
    table = run(_producer(aggregation, allowed_analyses=[], allowed_analysis_providers=[])).one(
        "aws-native:cleanrooms:ConfiguredTable")
    assert table.input("analysisRules.0.type") == "AGGREGATION"
    body = table.input("analysisRules.0.policy.v1.aggregation")
    assert body["aggregateColumns"] == [{"columnNames": ["customer_key"], "function": "COUNT_DISTINCT"},
                                        {"columnNames": ["purchase_amount"], "function": "AVG"}]
    assert body["outputConstraints"] == [{"columnName": "customer_key", "minimum": 3, "type": "COUNT_DISTINCT"}]
    assert body["joinRequired"] == "QUERY_RUNNER" and body["dimensionColumns"] == ["region", "age_group"]

    listing = AnalysisRuleSpec(type="LIST", join_columns=("customer_key",), list_columns=("region",))
    result = run(_producer(listing, allowed_analyses=[], allowed_analysis_providers=[], membership_id=MEMBERSHIP_ID,
                           trusted_membership_arns=[MEMBERSHIP_ARN]))
    assert result.one("aws-native:cleanrooms:ConfiguredTable").input("analysisRules.0.policy.v1.list") == {
        "joinColumns": ["customer_key"], "listColumns": ["region"]}
    assert result.one("aws-native:cleanrooms:ConfiguredTableAssociation").input(
        "configuredTableAssociationAnalysisRules.0.policy.v1.list") == {"allowedResultReceivers": [ACCOUNT]}


def _owner(**kwargs):
    creator = MemberSpec("org-a", "Org A", ACCOUNT, frozenset({"collaboration_owner", "analyst"}))
    partner = Partner("org-b", "Org B", PARTNER, frozenset({"data_producer"}))
    args = dict(spec=CollaborationSpec("collab", "A test collaboration", c3r=None), creator=creator,
                invited=[partner], analytics_engine="SPARK", payer="org-a")
    args.update(kwargs)
    return lambda: CollaborationOwner("owner", CollaborationOwnerArgs(**args))


def test_collaboration_owner_without_budget_or_c3r():
    result = run(_owner())
    assert result.of_type("aws-native:cleanrooms:PrivacyBudgetTemplate") == []
    collab = result.one("aws-native:cleanrooms:Collaboration")
    assert "dataEncryptionMetadata" not in collab.inputs
    assert collab.inputs["creatorDisplayName"] == "Org A"
    assert collab.protect and result.one("aws-native:cleanrooms:Membership").protect
    assert_children_of(result, "cleanrooms:roles:CollaborationOwner")


def test_collaboration_owner_with_c3r_and_another_payer():
    c3r = C3rSpec(allow_cleartext=True, allow_duplicates=False, allow_joins_on_columns_with_different_names=False,
                  preserve_nulls=False)
    result = run(_owner(spec=CollaborationSpec("collab", "C3R collaboration", c3r=c3r), payer="org-b",
                        query_logging=False))
    collab = result.one("aws-native:cleanrooms:Collaboration")
    assert collab.inputs["dataEncryptionMetadata"] == {
        "allowCleartext": True, "allowDuplicates": False, "allowJoinsOnColumnsWithDifferentNames": False,
        "preserveNulls": False}
    assert collab.inputs["creatorPaymentConfiguration"] == {"queryCompute": {"isResponsible": False}}
    assert collab.inputs["members"][0]["paymentConfiguration"] == {"queryCompute": {"isResponsible": True}}
    assert collab.inputs["queryLogStatus"] == "DISABLED"
    assert result.one("aws-native:cleanrooms:Membership").inputs["queryLogStatus"] == "DISABLED"


def test_results_store_trusts_only_this_accounts_memberships():
    result = run(lambda: ResultsStore("analyst", ResultsStoreArgs(
        organization="org-a", account_id=ACCOUNT, region="us-east-1", bucket_name="org-a-results",
        prefix="results", result_format="CSV")))
    trust = doc(result.one("aws:iam/role:Role"), "assumeRolePolicy")["Statement"][0]["Condition"]
    assert trust == {"StringEquals": {"aws:SourceAccount": [ACCOUNT]},
                     "ArnLike": {"aws:SourceArn": [f"arn:aws:cleanrooms:us-east-1:{ACCOUNT}:membership/*"]}}
    statements = {s["Sid"]: s for s in doc(result.one("aws:iam/rolePolicy:RolePolicy"))["Statement"]}
    assert statements["WriteResults"]["Resource"] == ["arn:aws:s3:::org-a-results/results/*"]
    assert statements["WriteResults"]["Action"] == ["s3:PutObject"]
    assert_children_of(result, "cleanrooms:roles:ResultsStore")


def test_member_joins_with_result_configuration():
    destination = ResultDestination(bucket="b", key_prefix="results", result_format="PARQUET",
                                    role_arn=f"arn:aws:iam::{ACCOUNT}:role/r")
    result = run(lambda: Member("member", MemberArgs(
        collaboration_id="3687eb1f-3fea-5a6e-b83f-4bd616fb0ed4", pays_for_queries=True, results=destination)))
    membership = result.one("aws-native:cleanrooms:Membership")
    assert membership.protect
    assert membership.inputs["defaultResultConfiguration"] == {
        "outputConfiguration": {"s3": {"bucket": "b", "keyPrefix": "results", "resultFormat": "PARQUET"}},
        "roleArn": f"arn:aws:iam::{ACCOUNT}:role/r"}
    assert_children_of(result, "cleanrooms:roles:Member")


def test_analyst_declares_only_templates_whose_tables_are_associated():
    queries = load_queries(ROOT / "data" / "queries", [])
    result = run(lambda: Analyst("analyst", AnalystArgs(
        membership_id=MEMBERSHIP_ID, queries=queries, associated_tables={"retail_purchases"})))
    assert result.of_type("aws-native:cleanrooms:AnalysisTemplate") == []
    result = run(lambda: Analyst("analyst", AnalystArgs(
        membership_id=MEMBERSHIP_ID, queries=queries, associated_tables={"retail_purchases", "media_engagement"},
        dp_tables={"media_engagement"})))
    templates = result.of_type("aws-native:cleanrooms:AnalysisTemplate")
    assert sorted(t.inputs["name"] for t in templates) == ["channel_reach", "customer_segments"]
    assert all(t.inputs["membershipIdentifier"] == MEMBERSHIP_ID for t in templates)
    component, _ = assert_children_of(result, "cleanrooms:roles:Analyst")
    registered = result.component_outputs[component.urn]["analysis_templates"]
    assert registered["customer_segments"]["differential_privacy"] is True
    assert registered["customer_segments"]["parameters"] == [{"name": "min_orders", "type": "INTEGER", "default": "1"}]


def test_every_component_registers_outputs(bootstrap):
    """Like data-safe-haven's check: a component without register_outputs never finishes in the engine."""
    for result in (bootstrap.a3, bootstrap.b2):
        components = [r for r in result.resources if not r.custom and r.typ.startswith("cleanrooms:")]
        assert components
        missing = [c.name for c in components if c.urn not in result.component_outputs]
        assert missing == []


def test_every_component_module_calls_register_outputs_last():
    for path in sorted((ROOT / "components").glob("*.py")):
        source = path.read_text()
        if "(pulumi.ComponentResource)" not in source:
            continue
        for init in source.split("def __init__")[1:]:
            body = init.split("\nclass ")[0].split("\n    def ")[0].rstrip().splitlines()
            last_statement = "\n".join(body[-8:])
            assert "self.register_outputs(" in last_statement, f"{path.name}: register_outputs is not last"
