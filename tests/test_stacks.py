"""Both stacks composed from the real Pulumi.org-a.yaml / Pulumi.org-b.yaml, and their bootstrap."""

from __future__ import annotations

import json
import shutil

import pytest

from model.errors import ConfigError
from tests import harness
from tests.harness import PROJECT, Run, run_stack, stack_config, stack_ref

A, B = "111111111111", "222222222222"
CR = "aws-native:cleanrooms"


def signature(run: Run) -> list[tuple]:
    """What a deployment would compare: every resource, its inputs and options."""
    return sorted((r.typ, r.name, json.dumps(r.inputs, sort_keys=True), r.protect, r.parent) for r in run.resources)


def trust(run: Run, role_name: str) -> dict[str, dict]:
    """The read role's trust statements by Sid."""
    return {s["Sid"]: s for s in json.loads(run.named(role_name).inputs["assumeRolePolicy"])["Statement"]}


def trust_source_arns(run: Run, role_name: str) -> list[str]:
    statement = trust(run, role_name)["MembersOfThisCollaborationBySourceArn"]
    return statement["Condition"]["ForAnyValue:ArnEquals"]["aws:SourceArn"]


def trust_external_id(run: Run, role_name: str) -> str:
    statement = trust(run, role_name)["QueryRunnerMembershipByExternalId"]
    return statement["Condition"]["StringLike"]["sts:ExternalId"]


def test_round1_org_a_creates_the_collaboration(bootstrap):
    run = bootstrap.a1
    collab = run.one(f"{CR}:Collaboration")
    # Org A runs PySpark jobs too (`jobs`): it may, and pays for their compute.
    assert collab.inputs["creatorMemberAbilities"] == ["CAN_QUERY", "CAN_RECEIVE_RESULTS", "CAN_RUN_JOB"]
    assert collab.inputs["members"] == [{
        "accountId": B, "displayName": "Org B (media)", "memberAbilities": [],
        "paymentConfiguration": {"queryCompute": {"isResponsible": False}}}]
    assert collab.inputs["creatorPaymentConfiguration"] == {"queryCompute": {"isResponsible": True},
                                                            "jobCompute": {"isResponsible": True}}
    assert collab.inputs["jobLogStatus"] == "ENABLED"
    assert collab.inputs["queryLogStatus"] == "ENABLED"
    assert collab.inputs["analyticsEngine"] == "SPARK"
    assert "dataEncryptionMetadata" not in collab.inputs  # no C3R unless configured
    assert collab.protect

    membership = run.one(f"{CR}:Membership")
    assert membership.inputs["collaborationIdentifier"] == collab.state["collaborationIdentifier"]
    s3 = membership.input("defaultResultConfiguration.outputConfiguration.s3")
    assert s3 == {"bucket": f"org-a-cleanrooms-results-{A}", "keyPrefix": "results", "resultFormat": "CSV"}
    assert membership.input("defaultResultConfiguration.roleArn") == \
        f"arn:aws:iam::{A}:role/service-role/org-a-cleanrooms-results"
    assert membership.input("paymentConfiguration.queryCompute.isResponsible") is True
    assert membership.protect and membership.inputs["queryLogStatus"] == "ENABLED"

    # Org B sets the privacy budget (its table is the protected one), once it has joined.
    assert run.of_type(f"{CR}:PrivacyBudgetTemplate") == [] and run.outputs["privacy_budget"] is None

    # Org B has not deployed: its table is unknown, so no SQL template can be created yet
    # (the PySpark job reads only org A's own table: test_newer_features).
    assert [t.inputs["format"] for t in run.of_type(f"{CR}:AnalysisTemplate")] == ["PYSPARK_1_0"]
    assert run.outputs["pending_templates"] == {"channel_reach": ["media_engagement"],
                                                "customer_segments": ["media_engagement"]}
    assert any("partner 'org-b' has no outputs yet" in line for line in run.logs)
    # Org A's own table is associated, readable only on behalf of its own membership so far.
    assert run.one(f"{CR}:ConfiguredTableAssociation").inputs["name"] == "retail_purchases"
    assert trust_source_arns(run, "org-a-producer-cleanrooms-read") == [membership.state["arn"]]
    # Org A runs the queries: its own membership is the ExternalId's.
    assert trust_external_id(run, "org-a-producer-cleanrooms-read") == \
        f"arn:aws:*:us-east-1:*:dbuser:*/{membership.state['membershipIdentifier']}*"


def test_round2_org_b_joins_with_org_a_ids(bootstrap):
    a1, run = bootstrap.a1, bootstrap.b2
    assert run.of_type(f"{CR}:Collaboration") == []
    membership = run.one(f"{CR}:Membership")
    assert membership.inputs["collaborationIdentifier"] == a1.outputs["collaboration_id"]
    assert membership.protect
    assert membership.input("paymentConfiguration.queryCompute.isResponsible") is False
    assert "defaultResultConfiguration" not in membership.inputs  # org B receives no results

    table = run.one(f"{CR}:ConfiguredTable")
    custom = table.input("analysisRules.0.policy.v1.custom")
    assert custom["allowedAnalyses"] == ["ANY_QUERY"] and custom["allowedAnalysisProviders"] == [A]
    assert custom["differentialPrivacy"] == {"columns": [{"name": "customer_key"}]}
    assert custom["disallowedOutputColumns"] == ["customer_key"]
    assert table.inputs["allowedColumns"] == ["customer_key", "age_group", "region", "channel", "sessions",
                                              "engagement_score"]
    assert table.input("tableReference.glue") == {"databaseName": "org_b_media_engagement",
                                                  "tableName": "media_engagement"}

    association = run.one(f"{CR}:ConfiguredTableAssociation")
    assert association.inputs["membershipIdentifier"] == membership.state["membershipIdentifier"]
    assert association.input("configuredTableAssociationAnalysisRules.0.policy.v1.custom") == {
        "allowedResultReceivers": [A]}
    # Clean Rooms may read org B's table on behalf of both memberships, and nobody else.
    assert sorted(trust_source_arns(run, "org-b-producer-cleanrooms-read")) == sorted(
        [a1.outputs["membership_arn"], membership.state["arn"]])
    # The query runner is org A: its membership id comes from org A's stack.
    assert trust_external_id(run, "org-b-producer-cleanrooms-read") == \
        f"arn:aws:*:us-east-1:*:dbuser:*/{a1.outputs['membership_id']}*"
    assert run.outputs["differential_privacy"] is True

    budget = run.one(f"{CR}:PrivacyBudgetTemplate")
    assert budget.inputs["parameters"] == {"epsilon": 10, "usersNoisePerQuery": 20}
    assert budget.inputs["autoRefresh"] == "CALENDAR_MONTH"
    assert budget.inputs["membershipIdentifier"] == membership.state["membershipIdentifier"]
    assert run.outputs["privacy_budget"] == {"epsilon": 10, "usersNoisePerQuery": 20, "autoRefresh": "CALENDAR_MONTH"}


def test_round3_org_a_completes_the_collaboration(bootstrap):
    b2, run = bootstrap.b2, bootstrap.a3
    templates = {t.inputs["name"]: t for t in run.of_type(f"{CR}:AnalysisTemplate")
                 if t.inputs["format"] == "SQL"}
    assert set(templates) == {"customer_segments", "channel_reach"}
    segments = templates["customer_segments"]
    assert segments.inputs["membershipIdentifier"] == run.outputs["membership_id"]
    assert segments.inputs["format"] == "SQL"
    assert segments.inputs["analysisParameters"] == [{"name": "min_orders", "type": "INTEGER", "defaultValue": "1"}]
    assert "JOIN media_engagement m" in segments.input("source.text")
    assert run.outputs["pending_templates"] == {}
    exported = run.outputs["analysis_templates"]["customer_segments"]
    assert exported["arn"] == segments.state["arn"] and exported["differential_privacy"] is True
    assert run.outputs["partners_joined"] == ["org-b"]
    assert b2.outputs["membership_arn"] in trust_source_arns(run, "org-a-producer-cleanrooms-read")


def test_a_further_round_changes_nothing(bootstrap):
    assert signature(bootstrap.a5) == signature(bootstrap.a3)
    assert signature(bootstrap.b4) == signature(bootstrap.b2)
    assert bootstrap.a5.outputs == bootstrap.a3.outputs


def test_every_resource_uses_the_stack_providers(bootstrap):
    for run, account in ((bootstrap.a3, A), (bootstrap.b2, B)):
        providers = {r.urn: r for r in run.resources if r.typ.startswith("pulumi:providers:")}
        assert {p.typ for p in providers.values()} == {"pulumi:providers:aws", "pulumi:providers:aws-native",
                                                       "pulumi:providers:time"}
        for provider in providers.values():
            if provider.typ == "pulumi:providers:time":
                continue  # no cloud account: it only waits
            # Provider inputs reach the engine JSON-encoded.
            assert json.loads(provider.inputs["allowedAccountIds"]) == [account]
            assert provider.inputs["region"] == "us-east-1"
        assert run.of_type("time:index/sleep:Sleep"), "the IAM propagation waits"
        for resource in run.resources:
            if resource.custom and resource.typ.split(":")[0] in ("aws", "aws-native", "time"):
                urn = resource.provider.split("::" + resource.provider.rsplit("::", 1)[-1])[0]
                assert urn in providers, f"{resource.name} uses provider {resource.provider}"


def test_every_cloud_provider_has_the_same_default_tags(bootstrap):
    """The aws-native provider, which declares every Clean Rooms resource, tags like the aws providers (the
    collaboration's region, a producer's dataRegion, the Identity Center account): memberships, configured tables
    and templates carry the organization, project and stack tags the permission sets' ABAC conditions read."""
    from tests.test_federated_access import access

    wide = run_stack("org-b", overrides={"dataRegion": "eu-west-1", "access": access()},
                     peer_outputs={stack_ref("org-a"): bootstrap.a3.outputs})
    for run, org, count in ((bootstrap.a3, "org-a", 2), (bootstrap.b2, "org-b", 2), (wide, "org-b", 4)):
        tags = {r.name: json.loads(r.inputs.get("defaultTags") or "null") for r in run.resources
                if r.typ in ("pulumi:providers:aws", "pulumi:providers:aws-native")}
        assert f"{org}-aws-native" in tags and len(tags) == count, sorted(tags)
        expected = {"tags": {"project": PROJECT, "organization": org, "stack": org}}
        assert tags == dict.fromkeys(tags, expected)


def test_default_providers_are_disabled_in_both_stacks():
    for stack in ("org-a", "org-b"):
        assert stack_config(stack)["pulumi:disable-default-providers"] == ["aws", "aws-native", "time"]


def test_protected_resources(bootstrap):
    protected = {r.typ for r in bootstrap.a3.resources if r.protect}
    assert protected == {f"{CR}:Collaboration", f"{CR}:Membership", "aws:s3/bucket:Bucket", "aws:kms/key:Key"}
    assert {r.typ for r in bootstrap.b2.resources if r.protect} == {
        f"{CR}:Membership", "aws:s3/bucket:Bucket", "aws:kms/key:Key"}
    unprotected = run_stack("org-b", peer_outputs={stack_ref("org-a"): bootstrap.a3.outputs},
                            overrides={"protect": False})
    assert not any(r.protect for r in unprotected.resources)


def test_preview_of_org_b_before_org_a_has_deployed():
    run = run_stack("org-b", preview=True)
    types = run.types()
    assert f"{CR}:Membership" not in types and f"{CR}:ConfiguredTableAssociation" not in types
    assert f"{CR}:ConfiguredTable" in types  # the data side is ready for the partner
    assert run.outputs["collaboration_id"] is None
    assert any("no collaboration id from 'org-a'" in line for line in run.logs)


def test_partner_values_from_config_instead_of_a_stack_reference(bootstrap):
    partner = dict(stack_config("org-b")[f"{PROJECT}:partners"][0])
    partner.pop("stack")
    partner["outputs"] = bootstrap.a3.outputs
    run = run_stack("org-b", overrides={"partners": [partner]})
    assert run.of_type("pulumi:pulumi:StackReference") == []
    # Everything else is what the stack reference gave.
    assert signature(run) == [r for r in signature(bootstrap.b4) if r[0] != "pulumi:pulumi:StackReference"]


def test_data_and_schema_reach_s3_and_glue(bootstrap):
    run = bootstrap.a3
    obj = run.named("org-a-producer-data-file")
    assert obj.inputs["key"] == "datasets/retail_purchases/retail_purchases.csv"
    assert obj.inputs["source"] == {"fileAsset": "data/retail_purchases/retail_purchases.csv"}
    assert obj.inputs["serverSideEncryption"] == "aws:kms"
    table = run.one("aws:glue/catalogTable:CatalogTable")
    columns = table.input("storageDescriptor.columns")
    # schema.yaml's Spark types, as the Hive names Glue declares.
    assert [(c["name"], c["type"]) for c in columns] == [
        ("customer_key", "varchar(64)"), ("age_group", "varchar(8)"), ("region", "varchar(16)"),
        ("product_category", "varchar(16)"), ("order_count", "int"), ("purchase_amount", "decimal(10,2)")]
    assert table.input("storageDescriptor.location") == \
        f"s3://org-a-cleanrooms-retail-purchases-{A}/datasets/retail_purchases/"
    # The CSV SerDe the Spark engine's format list names (OpenCSV), skipping the header.
    assert table.input("storageDescriptor.serDeInfo.serializationLibrary") == "org.apache.hadoop.hive.serde2.OpenCSVSerde"
    assert table.inputs["parameters"] == {"classification": "csv", "skip.header.line.count": "1"}
    assert run.of_type("aws:glue/crawler:Crawler") == []


def test_a_parquet_producer_gets_a_parquet_glue_table(bootstrap, tmp_path):
    import sys

    sys.path.insert(0, str(harness.ROOT / "scripts"))
    import generate_data

    generate_data.generate(300, 250, 100, 3, tmp_path, "parquet", interactions_users=100)
    shutil.copytree(harness.ROOT / "data" / "queries", tmp_path / "queries")
    run = run_stack("org-b", overrides={"dataDir": str(tmp_path)},
                    peer_outputs={stack_ref("org-a"): bootstrap.a3.outputs})
    obj = run.named("org-b-producer-data-file")
    assert obj.inputs["key"] == "datasets/media_engagement/media_engagement.parquet"
    # The training data is Parquet too (scripts/generate_data.py writes every dataset in one format).
    assert run.named("org-b-training-data-file").inputs["key"] == "training/media_interactions/media_interactions.parquet"
    table = run.named("org-b-producer-table")
    assert table.inputs["parameters"] == {"classification": "parquet"}
    assert table.input("storageDescriptor.serDeInfo.serializationLibrary") == \
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    assert table.input("storageDescriptor.inputFormat") == \
        "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"


# --------------------------------------------------------------------------
# Org B as the analyst: only config changes.

def _b_analyst_overrides():
    a_config = stack_config("org-a")
    partner_b = dict(a_config[f"{PROJECT}:partners"][0], roles=["data_producer", "analyst"])
    org_a = {"roles": ["collaboration_owner", "data_producer"], "partners": [partner_b],
             "analyst": None, "jobs": [],
             "analysisRule": {"type": "CUSTOM", "allowedAnalyses": "templates",
                              "aggregationThreshold": {"column": "customer_key", "minimum": 3}}}
    b_config = stack_config("org-b")
    partner_a = dict(b_config[f"{PROJECT}:partners"][0], roles=["collaboration_owner", "data_producer"],
                     runsJobs=False)
    # The analyst receives results, so org B drops differential privacy for an aggregation threshold
    # ("The member who can receive results can't use differential privacy", User Guide,
    # differential-privacy) and with it the privacy budget it set.
    org_b = {"roles": ["data_producer", "analyst"], "partners": [partner_a],
             "analysisRule": {"type": "CUSTOM", "allowedAnalyses": "ANY_QUERY",
                              "allowedAnalysisProviders": [B],
                              "aggregationThreshold": {"column": "customer_key", "minimum": 3}},
             "differentialPrivacy": None,
             "analyst": {"resultFormat": "PARQUET"}}
    return org_a, org_b


def test_org_b_as_analyst_is_a_config_change():
    org_a, org_b = _b_analyst_overrides()
    a1 = run_stack("org-a", overrides=org_a)
    collab = a1.one(f"{CR}:Collaboration")
    assert collab.inputs["creatorMemberAbilities"] == []
    assert collab.inputs["members"][0]["memberAbilities"] == ["CAN_QUERY", "CAN_RECEIVE_RESULTS"]
    assert collab.inputs["members"][0]["paymentConfiguration"] == {"queryCompute": {"isResponsible": True}}
    assert "defaultResultConfiguration" not in a1.one(f"{CR}:Membership").inputs
    # Org A approves org B's templates; none exist yet, so nothing is allowed.
    assert a1.one(f"{CR}:ConfiguredTable").input("analysisRules.0.policy.v1.custom.allowedAnalyses") == []

    b2 = run_stack("org-b", overrides=org_b, peer_outputs={stack_ref("org-a"): a1.outputs})
    membership = b2.one(f"{CR}:Membership")
    assert membership.input("paymentConfiguration.queryCompute.isResponsible") is True
    assert membership.input("defaultResultConfiguration.outputConfiguration.s3.resultFormat") == "PARQUET"
    templates = b2.of_type(f"{CR}:AnalysisTemplate")
    assert {t.inputs["name"] for t in templates} == {"customer_segments", "channel_reach"}
    assert all(t.inputs["membershipIdentifier"] == membership.state["membershipIdentifier"] for t in templates)

    a3 = run_stack("org-a", overrides=org_a, peer_outputs={stack_ref("org-b"): b2.outputs})
    allowed = a3.one(f"{CR}:ConfiguredTable").input("analysisRules.0.policy.v1.custom.allowedAnalyses")
    assert allowed == sorted(t.state["arn"] for t in templates)
    receivers = a3.one(f"{CR}:ConfiguredTableAssociation").input(
        "configuredTableAssociationAnalysisRules.0.policy.v1.custom.allowedResultReceivers")
    assert receivers == [B]


def test_analyst_cannot_approve_its_own_templates_by_arn():
    with pytest.raises(ConfigError, match="use allowedAnalyses: ANY_QUERY"):
        run_stack("org-a", overrides={"analysisRule": {"type": "CUSTOM", "allowedAnalyses": "templates"}})
    # Refused before anything but the (read-only) stack reference was declared.
    assert [r.typ for r in harness.LAST_MONITOR.registered] == ["pulumi:pulumi:StackReference"]


def test_legacy_engine_is_refused_before_anything_is_declared():
    with pytest.raises(ConfigError, match="analyticsEngine"):
        run_stack("org-a", overrides={"analyticsEngine": "CLEAN_ROOMS_SQL"})
    assert harness.LAST_MONITOR.registered == []


def test_engine_mismatch_with_the_owner_is_refused(bootstrap):
    outputs = dict(bootstrap.a3.outputs, analytics_engine="CLEAN_ROOMS_SQL")
    with pytest.raises(ConfigError, match="analyticsEngine: CLEAN_ROOMS_SQL"):
        run_stack("org-b", peer_outputs={stack_ref("org-a"): outputs})
    assert [r.typ for r in harness.LAST_MONITOR.registered] == ["pulumi:pulumi:StackReference"]


# --------------------------------------------------------------------------
# Who sets the privacy budget: org B by default, any one member by config.

B_BUDGET = stack_config("org-b")[f"{PROJECT}:differentialPrivacy"]


def test_the_owner_can_set_the_privacy_budget_instead():
    owner_sets = {"differentialPrivacy": B_BUDGET}
    a1 = run_stack("org-a", overrides=owner_sets)
    budget = a1.one(f"{CR}:PrivacyBudgetTemplate")
    assert budget.inputs["membershipIdentifier"] == a1.outputs["membership_id"]
    b2 = run_stack("org-b", overrides={"differentialPrivacy": None}, peer_outputs={stack_ref("org-a"): a1.outputs})
    assert b2.of_type(f"{CR}:PrivacyBudgetTemplate") == []
    assert not any("no member has set" in line for line in b2.logs)  # org A set it
    a3 = run_stack("org-a", overrides=owner_sets, peer_outputs={stack_ref("org-b"): b2.outputs})
    assert a3.one(f"{CR}:PrivacyBudgetTemplate").inputs == budget.inputs
    assert {t.inputs["name"] for t in a3.of_type(f"{CR}:AnalysisTemplate")} == {
        "customer_segments", "channel_reach", "retail_order_mix"}


def test_only_one_member_may_set_the_privacy_budget(bootstrap):
    with pytest.raises(ConfigError, match="partner\\(s\\) \\['org-b'\\] already set the collaboration's privacy"):
        run_stack("org-a", overrides={"differentialPrivacy": B_BUDGET},
                  peer_outputs={stack_ref("org-b"): bootstrap.b2.outputs})


def test_a_protected_table_without_a_budget_is_said(bootstrap):
    run = run_stack("org-b", overrides={"differentialPrivacy": None},
                    peer_outputs={stack_ref("org-a"): bootstrap.a1.outputs})
    assert run.of_type(f"{CR}:PrivacyBudgetTemplate") == []
    assert any("no member has set the collaboration's privacy budget" in line for line in run.logs)
