"""Clean Rooms as it is now: Spark compute per template, results to several receivers.

The runner's side of both is in tests/test_queryrunner_*.py; these check what
the stacks declare and export for it.
"""

from __future__ import annotations

import shutil

import pytest

from model.errors import ConfigError
from tests.harness import PROJECT, ROOT, run_stack, stack_config, stack_ref
from tests.test_config import settings_for

CR = "aws-native:cleanrooms"
A, B, C = "111111111111", "222222222222", "333333333333"
PARTNER_B = stack_config("org-a")[f"{PROJECT}:partners"][0]
ORG_C = {"name": "org-c", "displayName": "Org C (agency)", "accountId": C, "roles": ["result_receiver"],
         "stack": "organization/cleanrooms-collab/org-c"}


# --------------------------------------------------------------------------
# Spark compute


def test_compute_defaults_per_stack_and_per_template(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data", data)
    sql = data / "queries" / "channel_reach.sql"
    sql.write_text(sql.read_text().replace("-- param:", "-- compute: CR.4X 32\n-- param:", 1))
    run = run_stack("org-a", overrides={"dataDir": str(data),
                                        "analyst": {"compute": {"workerType": "CR.1X", "workers": 8}}})
    assert run.outputs["compute"] == {"workerType": "CR.1X", "workers": 8}
    # Templates wait for org B's table, so the exported template info is checked on the model.
    settings = settings_for("org-a", {"dataDir": str(data)})
    compute = {q.name: q.compute for q in settings.analyst.queries}
    assert compute["channel_reach"].export() == {"workerType": "CR.4X", "workers": 32}
    assert compute["customer_segments"] is None


def test_templates_export_their_tables_and_compute(bootstrap):
    templates = bootstrap.a3.outputs["analysis_templates"]
    assert templates["customer_segments"]["tables"] == ["media_engagement", "retail_purchases"]
    assert "compute" not in templates["customer_segments"]  # the stack default (none: the service's) applies
    assert bootstrap.a3.outputs["compute"] is None


@pytest.mark.parametrize("compute, key, fragment", [
    ({"workerType": "CR.16X", "workers": 8}, "analyst.compute.workerType", "'CR.1X'"),
    ({"workerType": "CR.1X", "workers": 1}, "analyst.compute.workers", "2 to 400"),
    ({"workerType": "CR.1X", "workers": 401}, "analyst.compute.workers", "2 to 400"),
    ({"workerType": "CR.1X"}, "analyst.compute.workers", "is missing"),
    ({"workerType": "CR.1X", "workers": 8, "memory": 64}, "analyst.compute.memory", "unknown key"),
])
def test_bad_compute_is_refused(compute, key, fragment):
    with pytest.raises(ConfigError) as info:
        settings_for("org-a", {"analyst": {"compute": compute}})
    assert str(info.value).startswith(f"config '{PROJECT}:{key}'") and fragment in str(info.value)


# --------------------------------------------------------------------------
# Results to several receivers


def org_c_overrides() -> dict:
    partner_a = dict(stack_config("org-b")[f"{PROJECT}:partners"][0])
    return {"organization": "org-c", "displayName": "Org C (agency)", "accountId": C, "roles": ["result_receiver"],
            "profile": "org-c", "dataset": None, "analysisRule": None, "differentialPrivacy": None,
            "partners": [partner_a, {**PARTNER_B, "stack": "organization/cleanrooms-collab/org-b"}],
            "results": {"resultFormat": "PARQUET", "resultsPrefix": "from-org-a"}}


def test_a_result_receiver_is_invited_and_exported_to_the_analyst():
    run = run_stack("org-a", overrides={"partners": [PARTNER_B, ORG_C]})
    members = {m["accountId"]: m["memberAbilities"] for m in run.one(f"{CR}:Collaboration").inputs["members"]}
    assert members == {B: [], C: ["CAN_RECEIVE_RESULTS"]}
    assert run.outputs["result_receivers"] == [C]
    receivers = run.one(f"{CR}:ConfiguredTableAssociation").input(
        "configuredTableAssociationAnalysisRules.0.policy.v1.custom.allowedResultReceivers")
    assert receivers == [A, C]


def test_the_receiver_has_its_own_results_store():
    a1 = run_stack("org-a", overrides={"partners": [PARTNER_B, ORG_C]})
    run = run_stack("org-b", overrides=org_c_overrides(), peer_outputs={stack_ref("org-a"): a1.outputs})
    membership = run.one(f"{CR}:Membership")
    assert membership.inputs["collaborationIdentifier"] == a1.outputs["collaboration_id"]
    s3 = membership.input("defaultResultConfiguration.outputConfiguration.s3")
    assert s3 == {"bucket": f"org-c-cleanrooms-results-{C}", "keyPrefix": "from-org-a", "resultFormat": "PARQUET"}
    assert run.of_type(f"{CR}:ConfiguredTable") == [] and run.outputs["results_bucket"] == f"org-c-cleanrooms-results-{C}"
    assert "result_receivers" not in run.outputs  # only the analyst distributes


def test_results_block_only_for_receivers():
    with pytest.raises(ConfigError, match="'cleanrooms-collab:results': only applies to an organization with role "
                                          "'result_receiver'"):
        settings_for("org-b", {"results": {"resultFormat": "CSV"}})


# --------------------------------------------------------------------------
# Data access budgets

ACCESS = {"accessBudget": {"perPeriod": {"period": "CALENDAR_DAY", "budget": 20}, "lifetime": 500}}


def test_a_producer_declares_an_access_budget_on_its_table(bootstrap):
    from tests.support.cfn_schema import validate_native

    b2 = run_stack("org-b", overrides=ACCESS, peer_outputs={stack_ref("org-a"): bootstrap.a1.outputs})
    budgets = {r.inputs["privacyBudgetType"]: r for r in b2.of_type(f"{CR}:PrivacyBudgetTemplate")}
    access = budgets["ACCESS_BUDGET"]
    association = b2.one(f"{CR}:ConfiguredTableAssociation")
    assert access.inputs["parameters"] == {
        "resourceArn": association.state["arn"],
        "budgetParameters": [{"type": "CALENDAR_DAY", "budget": 20, "autoRefresh": "ENABLED"},
                             {"type": "LIFETIME", "budget": 500}]}
    assert access.inputs["autoRefresh"] == "NONE" and association.urn in access.dependencies
    assert validate_native(access.typ, access.inputs) == []
    assert b2.outputs["access_budget"] == {"period": "CALENDAR_DAY", "periodBudget": 20, "autoRefresh": True,
                                           "lifetime": 500}
    # The analyst learns which tables have one, for the runner's pre-check.
    a3 = run_stack("org-a", peer_outputs={stack_ref("org-b"): b2.outputs})
    assert a3.outputs["access_budgets"] == {"media_engagement": association.state["arn"]}


@pytest.mark.parametrize("budget, key, fragment", [
    ({}, "accessBudget", "perPeriod"),
    ({"lifetime": -1}, "accessBudget.lifetime", "0 to 1000000"),
    ({"perPeriod": {"period": "HOURLY", "budget": 5}}, "accessBudget.perPeriod.period", "'CALENDAR_DAY'"),
    ({"perPeriod": {"period": "CALENDAR_DAY"}}, "accessBudget.perPeriod.budget", "is missing"),
])
def test_bad_access_budget_is_refused(budget, key, fragment):
    with pytest.raises(ConfigError) as info:
        settings_for("org-b", {"accessBudget": budget})
    assert str(info.value).startswith(f"config '{PROJECT}:{key}'") and fragment in str(info.value)


# --------------------------------------------------------------------------
# Collaboration changes: auto-approved change types, members added by change request

import datetime as dt  # noqa: E402

import boto3  # noqa: E402
from botocore.stub import Stubber  # noqa: E402

from tests.support.clock import Clock  # noqa: E402

from components.member_change import ChangeRequestError, Poll, add_member  # noqa: E402

COLLAB_ID = "3687eb1f-3fea-5a6e-b83f-4bd616fb0ed4"
REQUEST_ID = "5a1c7a35-0f0b-4a57-9b2e-2b4b8f2f5f11"


def test_a_member_added_by_change_request_leaves_the_collaboration_in_place():
    collaboration = {**stack_config("org-a")[f"{PROJECT}:collaboration"],
                     "autoApprovedChangeTypes": ["ADD_MEMBER", "GRANT_RECEIVE_RESULTS_ABILITY"]}
    run = run_stack("org-a", overrides={"collaboration": collaboration,
                                        "partners": [PARTNER_B, {**ORG_C, "addedBy": "changeRequest"}]})
    collab = run.one(f"{CR}:Collaboration")
    assert [m["accountId"] for m in collab.inputs["members"]] == [B]  # not org C: no replacement
    assert collab.inputs["autoApprovedChangeTypes"] == ["ADD_MEMBER", "GRANT_RECEIVE_RESULTS_ABILITY"]
    [change] = [r for r in run.resources if r.name == "org-a-owner-add-org-c"]
    assert change.typ == "pulumi-python:dynamic:Resource"
    assert {k: change.inputs[k] for k in ("account_id", "abilities", "owner_account_id", "region", "profile")} == {
        "account_id": C, "abilities": ["CAN_RECEIVE_RESULTS"], "owner_account_id": A, "region": "us-east-1",
        "profile": "org-a"}
    assert change.inputs["collaboration_id"] == collab.state["collaborationIdentifier"]
    # The member itself is still an allowed receiver of every table.
    assert run.outputs["result_receivers"] == [C]


@pytest.mark.parametrize("partner, key, fragment", [
    ({**PARTNER_B, "roles": ["data_producer", "analyst"], "addedBy": "changeRequest"}, "partners[0].addedBy",
     "cannot add the analyst"),
    ({**PARTNER_B, "addedBy": "later"}, "partners[0].addedBy", "'invitation'"),
])
def test_what_a_change_request_cannot_add(partner, key, fragment):
    overrides = {"partners": [partner]}
    if "analyst" in partner["roles"]:
        overrides.update(roles=["collaboration_owner", "data_producer"], analyst=None)
    with pytest.raises(ConfigError) as info:
        settings_for("org-a", overrides)
    assert str(info.value).startswith(f"config '{PROJECT}:{key}'") and fragment in str(info.value)


def _request(status: str, auto: bool = False) -> dict:
    now = dt.datetime(2026, 11, 25, tzinfo=dt.timezone.utc)
    return {"collaborationChangeRequest": {
        "id": REQUEST_ID, "collaborationId": COLLAB_ID, "createTime": now, "updateTime": now, "status": status,
        "isAutoApproved": auto, "changes": [{"specificationType": "MEMBER", "specification": {"member": {
            "accountId": C, "memberAbilities": ["CAN_RECEIVE_RESULTS"], "displayName": "Org C"}},
            "types": ["ADD_MEMBER"]}]}}


@pytest.fixture
def cleanrooms():
    client = boto3.client("cleanrooms", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


CREATE = {"collaborationIdentifier": COLLAB_ID, "changes": [{"specificationType": "MEMBER", "specification": {
    "member": {"accountId": C, "memberAbilities": ["CAN_RECEIVE_RESULTS"], "displayName": "Org C"}}}]}
IDENT = {"collaborationIdentifier": COLLAB_ID, "changeRequestIdentifier": REQUEST_ID}


def test_an_auto_approved_request_is_committed(cleanrooms):
    client, stub = cleanrooms
    stub.add_response("create_collaboration_change_request", _request("APPROVED", auto=True), CREATE)
    stub.add_response("update_collaboration_change_request", _request("APPROVED", auto=True),
                      {**IDENT, "action": "COMMIT"})
    stub.add_response("get_collaboration_change_request", _request("COMMITTED", auto=True), IDENT)
    clock = Clock()
    state = add_member(client, COLLAB_ID, C, "Org C", ["CAN_RECEIVE_RESULTS"], Poll(60, clock, clock.sleep))
    assert state["status"] == "COMMITTED" and clock.now == 0


def test_a_pending_request_waits_for_approval_with_backoff_then_commits(cleanrooms):
    client, stub = cleanrooms
    stub.add_response("create_collaboration_change_request", _request("PENDING"), CREATE)
    for _ in range(3):
        stub.add_response("get_collaboration_change_request", _request("PENDING"), IDENT)
    stub.add_response("get_collaboration_change_request", _request("APPROVED"), IDENT)
    stub.add_response("update_collaboration_change_request", _request("APPROVED"), {**IDENT, "action": "COMMIT"})
    stub.add_response("get_collaboration_change_request", _request("COMMITTED"), IDENT)
    clock = Clock()
    state = add_member(client, COLLAB_ID, C, "Org C", ["CAN_RECEIVE_RESULTS"], Poll(60, clock, clock.sleep))
    assert state["status"] == "COMMITTED"
    assert 0.8 * (1 + 2 + 4) <= clock.now <= 1.2 * (1 + 2 + 4)  # doubling waits, no fixed sleeps


def test_a_denied_or_unapproved_request_fails_with_one_line(cleanrooms):
    client, stub = cleanrooms
    stub.add_response("create_collaboration_change_request", _request("PENDING"), CREATE)
    stub.add_response("get_collaboration_change_request", _request("DENIED"), IDENT)
    with pytest.raises(ChangeRequestError, match=f"change request {REQUEST_ID} adding {C} was DENIED"):
        add_member(client, COLLAB_ID, C, "Org C", ["CAN_RECEIVE_RESULTS"], Poll(60, Clock(), lambda s: None))
    stub.add_response("create_collaboration_change_request", _request("PENDING"), CREATE)
    for _ in range(5):  # at 0, 1, 3, 7 and 10 s: the deadline
        stub.add_response("get_collaboration_change_request", _request("PENDING"), IDENT)
    # Unapproved at the deadline: cancelled, since Pulumi keeps no state for a failed create.
    stub.add_response("update_collaboration_change_request", _request("CANCELLED"), {**IDENT, "action": "CANCEL"})
    clock = Clock()
    with pytest.raises(ChangeRequestError, match="still PENDING after 10s"):
        add_member(client, COLLAB_ID, C, "Org C", ["CAN_RECEIVE_RESULTS"],
                   Poll(10, clock, clock.sleep, jitter=lambda: 1.0))
    assert clock.now == 10
    stub.assert_no_pending_responses()


# --------------------------------------------------------------------------
# PySpark analysis templates (data/jobs/<name>/)


def test_a_job_is_a_pyspark_template_over_a_pinned_artifact(bootstrap):
    import hashlib

    run = bootstrap.a3
    script = ROOT / "data" / "jobs" / "retail_order_mix" / "entrypoint.py"
    digest = hashlib.sha256(script.read_bytes()).hexdigest()
    [template] = [t for t in run.of_type(f"{CR}:AnalysisTemplate") if t.inputs["format"] == "PYSPARK_1_0"]
    artifacts = template.inputs["source"]["artifacts"]
    key = f"jobs/retail_order_mix/{digest}/entrypoint.py"
    assert artifacts["entryPoint"]["location"] == {"bucket": f"org-a-cleanrooms-artifacts-{A}", "key": key}
    role = run.named("org-a-jobs-cleanrooms-artifacts")
    assert artifacts["roleArn"] == role.state["arn"] and role.inputs["path"] == "/service-role/"
    assert template.inputs["schema"] == {"referencedTables": ["retail_purchases"]}
    assert template.inputs["analysisParameters"] == [{"name": "min_orders", "type": "INT", "defaultValue": "1"}]
    assert template.inputs["sourceMetadata"] == {"artifacts": {"entryPointHash": {"sha256": digest}}}

    # The object is uploaded, with its SHA-256, into a versioned bucket, before the template.
    obj = run.named("org-a-jobs-retail-order-mix-script")
    assert obj.inputs["key"] == key and obj.inputs["checksumAlgorithm"] == "SHA256"
    assert obj.inputs["source"] == {"fileAsset": str(script.relative_to(ROOT))}
    versioning = run.named("org-a-jobs-artifacts-versioning")
    assert versioning.urn in obj.dependencies and obj.urn in template.dependencies

    # The role may read artifacts, and nothing else.
    import json
    policy = json.loads(run.named("org-a-jobs-cleanrooms-artifacts-policy").inputs["policy"])
    actions = sorted(a for s in policy["Statement"] for a in s["Action"])
    assert actions == ["kms:Decrypt", "s3:GetBucketLocation", "s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"]

    exported = run.outputs["job_templates"]["retail_order_mix"]
    assert exported["sha256"] == digest and exported["tables"] == ["retail_purchases"]
    assert exported["compute"] == {"workerType": "CR.1X", "workers": 4}
    assert exported["arn"] == template.state["arn"] and run.outputs["pending_jobs"] == {}


def test_the_analyst_membership_and_its_table_are_ready_for_jobs(bootstrap):
    run = bootstrap.a3
    membership = run.one(f"{CR}:Membership")
    assert membership.input("paymentConfiguration.jobCompute.isResponsible") is True
    assert membership.inputs["jobLogStatus"] == "ENABLED"
    job_results = membership.inputs["defaultJobResultConfiguration"]
    assert job_results["outputConfiguration"]["s3"]["keyPrefix"] == "results/jobs"
    assert job_results["roleArn"] == membership.input("defaultResultConfiguration.roleArn")
    table = run.one(f"{CR}:ConfiguredTable")
    assert table.inputs["analysisMethod"] == "MULTIPLE"
    assert table.inputs["selectedAnalysisMethods"] == ["DIRECT_QUERY", "DIRECT_JOB"]
    # Org B's table is under differential privacy: SQL only.
    b_table = bootstrap.b2.one(f"{CR}:ConfiguredTable")
    assert b_table.inputs["analysisMethod"] == "DIRECT_QUERY" and "selectedAnalysisMethods" not in b_table.inputs
    assert bootstrap.b2.outputs["runs_jobs"] is False and run.outputs["runs_jobs"] is True


def _job_dir(tmp_path, job_yaml: str | None = None, script: str | None = None):
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data", data)
    job = data / "jobs" / "retail_order_mix"
    if job_yaml is not None:
        (job / "job.yaml").write_text(job_yaml)
    if script is not None:
        (job / "entrypoint.py").write_text(script)
    return data


GOOD_JOB = "entryPoint: entrypoint.py\ntables: [retail_purchases]\n"


@pytest.mark.parametrize("job_yaml, script, fragment", [
    ("tables: [retail_purchases]\nworkers: 4\n", None, "unknown key 'workers'"),
    (GOOD_JOB + "compute: {workerType: CR.1X, workers: 2}\n", None, "compute.workers"),
    (GOOD_JOB + "compute: {workerType: CR.8X, workers: 4}\n", None, "'CR.4X'"),
    ("entryPoint: ../entrypoint.py\ntables: [retail_purchases]\n", None, "must be a .py file beside job.yaml"),
    ("entryPoint: entrypoint.py\ntables: []\n", None, "tables"),
    (GOOD_JOB + "parameters: [{name: n, type: INT, default: many}]\n", None, "default 'many' of parameter 'n'"),
    (GOOD_JOB, "def main(context):\n    return {}\n", "def entrypoint(context)"),
    (GOOD_JOB, "def entrypoint(context:\n", "entrypoint.py:1: not valid Python"),
])
def test_bad_jobs_are_refused_with_the_file(tmp_path, job_yaml, script, fragment):
    data = _job_dir(tmp_path, job_yaml, script)
    with pytest.raises(ConfigError) as info:
        settings_for("org-a", {"dataDir": str(data)})
    message = str(info.value)
    assert message.startswith(f"config '{PROJECT}:jobs'") and fragment in message, message
    assert "retail_order_mix" in message


def test_an_unknown_job_names_the_available_ones():
    with pytest.raises(ConfigError) as info:
        settings_for("org-a", {"jobs": ["retail_order_mx"]})
    assert "no such job ['retail_order_mx']" in str(info.value) and "['retail_order_mix']" in str(info.value)


@pytest.mark.parametrize("overrides, key, fragment", [
    # Jobs are not allowed where no output rule would apply to what they return.
    ({"analysisRule": {"type": "CUSTOM", "allowedAnalyses": "ANY_QUERY", "allowedAnalysisProviders": [A],
                       "allowJobs": True, "differentialPrivacy": {"userIdentifierColumn": "customer_key"}}},
     "analysisRule.allowJobs", "differential privacy"),
    ({"analysisRule": {"type": "CUSTOM", "allowedAnalyses": "ANY_QUERY", "allowedAnalysisProviders": [A],
                       "allowJobs": True}},
     "analysisRule.allowJobs", "would let ['111111111111'] run any PySpark code"),
])
def test_a_partner_table_opens_to_jobs_only_template_by_template(overrides, key, fragment):
    with pytest.raises(ConfigError) as info:
        settings_for("org-b", overrides)
    assert str(info.value).startswith(f"config '{PROJECT}:{key}'") and fragment in str(info.value)


def test_a_job_on_a_partner_table_waits_for_it_and_dp_tables_are_refused(bootstrap, tmp_path):
    import pulumi

    data = _job_dir(tmp_path, "tables: [retail_purchases, media_engagement]\n")
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-a", overrides={"dataDir": str(data)}, peer_outputs={stack_ref("org-b"): bootstrap.b2.outputs})
    assert "table 'media_engagement' is under differential privacy" in str(info.value)
    # Before org B deploys its table is unknown: the template waits, and says so.
    run = run_stack("org-a", overrides={"dataDir": str(data)})
    assert run.outputs["pending_jobs"] == {"retail_order_mix": ["media_engagement"]}
    assert "job_templates" in run.outputs and run.outputs["job_templates"] == {}


def test_both_stacks_must_say_the_analyst_runs_jobs(bootstrap):
    import pulumi

    partner = dict(stack_config("org-b")[f"{PROJECT}:partners"][0], runsJobs=False)
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-b", overrides={"partners": [partner]}, peer_outputs={stack_ref("org-a"): bootstrap.a1.outputs})
    assert "partners[0].runsJobs" in str(info.value) and "reports True" in str(info.value)


# A data producer that ships its own job: it creates, runs and receives it.

ENGAGEMENT_JOB = """def entrypoint(context):
    media = context["referencedTables"]["media_engagement"]
    return {"results": {"by_channel": media.groupBy("channel").count()}}
"""
B_THRESHOLD_RULE = {"type": "CUSTOM", "allowedAnalyses": "ANY_QUERY", "allowedAnalysisProviders": [A, B],
                    "allowJobs": True, "aggregationThreshold": {"column": "customer_key", "minimum": 3}}


def _with_job(tmp_path, name: str, tables: list[str], script: str = ENGAGEMENT_JOB):
    data = tmp_path / "data"
    if not data.exists():
        shutil.copytree(ROOT / "data", data)
    job = data / "jobs" / name
    job.mkdir(parents=True)
    (job / "job.yaml").write_text(f"tables: {tables}\n")
    (job / "entrypoint.py").write_text(script)
    return data


def _producer_job_overrides(data, a_runs_jobs: bool = False) -> tuple[dict, dict]:
    partner_a = dict(stack_config("org-b")[f"{PROJECT}:partners"][0], runsJobs=a_runs_jobs)
    org_a = {"partners": [dict(PARTNER_B, runsJobs=True)], **({} if a_runs_jobs else {"jobs": []})}
    org_b = {"dataDir": str(data), "partners": [partner_a], "analysisRule": B_THRESHOLD_RULE,
             "differentialPrivacy": None, "jobs": ["engagement_mix"], "results": {"resultsPrefix": "out"}}
    return org_a, org_b


def test_a_producer_ships_a_job_and_receives_its_results(tmp_path):
    data = _with_job(tmp_path, "engagement_mix", ["media_engagement"])
    org_a, org_b = _producer_job_overrides(data)
    a1 = run_stack("org-a", overrides=org_a)
    collab = a1.one(f"{CR}:Collaboration")
    assert collab.inputs["creatorMemberAbilities"] == ["CAN_QUERY", "CAN_RECEIVE_RESULTS"]
    [b] = collab.inputs["members"]
    # "The member who creates the PySpark analysis template must also be the member who receives results."
    assert b["memberAbilities"] == ["CAN_RECEIVE_RESULTS", "CAN_RUN_JOB"]
    assert b["paymentConfiguration"]["jobCompute"] == {"isResponsible": True}
    assert collab.inputs["jobLogStatus"] == "ENABLED"

    b2 = run_stack("org-b", overrides=org_b, peer_outputs={stack_ref("org-a"): a1.outputs})
    membership = b2.one(f"{CR}:Membership")
    assert membership.input("paymentConfiguration.jobCompute.isResponsible") is True
    job_results = membership.inputs["defaultJobResultConfiguration"]
    assert job_results["outputConfiguration"]["s3"] == {"bucket": f"org-b-cleanrooms-results-{B}",
                                                       "keyPrefix": "out/jobs"}
    [template] = b2.of_type(f"{CR}:AnalysisTemplate")
    assert template.inputs["format"] == "PYSPARK_1_0" and template.inputs["name"] == "engagement_mix"
    assert template.inputs["membershipIdentifier"] == membership.state["membershipIdentifier"]
    assert template.inputs["source"]["artifacts"]["entryPoint"]["location"]["bucket"] == \
        f"org-b-cleanrooms-artifacts-{B}"
    table = b2.one(f"{CR}:ConfiguredTable")
    assert table.inputs["analysisMethod"] == "MULTIPLE"
    assert table.input("analysisRules.0.policy.v1.custom.allowedAnalyses") == ["ANY_QUERY", "ANY_JOB"]
    assert b2.outputs["runs_jobs"] is True and set(b2.outputs["job_templates"]) == {"engagement_mix"}
    assert b2.outputs["results_bucket"] == f"org-b-cleanrooms-results-{B}"
    # Org A distributes query results to receivers only; org B runs its own jobs.
    assert a1.outputs["result_receivers"] == []
    # What Cloud Control would receive, and the IAM documents, pass the real schemas and linter.
    from tests.support.cfn_schema import validate_native
    from tests.support.iam_lint import iam_documents_from_mock_resources, lint_policy

    for run in (a1, b2):
        for r in run.resources:
            if r.custom and r.typ.startswith("aws-native:"):
                assert validate_native(r.typ, r.inputs) == [], r.name
    for document in iam_documents_from_mock_resources(b2.resources):
        assert lint_policy(document.document, kind=document.kind) == [], document.resource_name


def test_any_job_is_refused_where_a_partner_that_runs_jobs_could_use_it(tmp_path):
    data = _with_job(tmp_path, "engagement_mix", ["media_engagement"])
    _, org_b = _producer_job_overrides(data, a_runs_jobs=True)
    with pytest.raises(ConfigError) as info:
        settings_for("org-b", org_b)
    assert str(info.value).startswith(f"config '{PROJECT}:analysisRule.allowJobs': would let ['{A}'] run any "
                                      "PySpark code")


def test_a_job_on_its_own_table_needs_any_query_for_its_account(bootstrap, tmp_path):
    import pulumi

    data = _with_job(tmp_path, "engagement_mix", ["media_engagement"])
    org_a, org_b = _producer_job_overrides(data)
    a1 = run_stack("org-a", overrides=org_a)
    own_out = dict(org_b, analysisRule=dict(B_THRESHOLD_RULE, allowedAnalysisProviders=[A]))
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-b", overrides=own_out, peer_outputs={stack_ref("org-a"): a1.outputs})
    assert f"not org-b's account {B}" in str(info.value)
    by_arn = dict(org_b, analysisRule={k: v for k, v in B_THRESHOLD_RULE.items() if k != "allowedAnalysisProviders"}
                  | {"allowedAnalyses": "templates"})
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-b", overrides=by_arn, peer_outputs={stack_ref("org-a"): a1.outputs})
    assert "cannot be approved on its own table" in str(info.value)


def test_a_partner_approving_templates_approves_the_jobs_that_read_its_table(tmp_path):
    """Org A's job joins org B's table; org B approves by ARN exactly the templates that may read it."""
    data = _with_job(tmp_path, "joint_mix", ["retail_purchases", "media_engagement"])
    other = data / "jobs" / "own_only"
    shutil.copytree(data / "jobs" / "retail_order_mix", other)
    org_a = {"dataDir": str(data), "jobs": ["joint_mix", "own_only"]}
    b_rule = {"type": "CUSTOM", "allowedAnalyses": "templates", "allowJobs": True,
              "aggregationThreshold": {"column": "customer_key", "minimum": 3}}
    org_b = {"analysisRule": b_rule, "differentialPrivacy": None}
    a1 = run_stack("org-a", overrides=org_a)
    assert a1.outputs["pending_jobs"] == {"joint_mix": ["media_engagement"]}
    b2 = run_stack("org-b", overrides=org_b, peer_outputs={stack_ref("org-a"): a1.outputs})
    a3 = run_stack("org-a", overrides=org_a, peer_outputs={stack_ref("org-b"): b2.outputs})
    jobs = a3.outputs["job_templates"]
    assert set(jobs) == {"own_only", "joint_mix"} and a3.outputs["pending_jobs"] == {}
    b4 = run_stack("org-b", overrides=org_b, peer_outputs={stack_ref("org-a"): a3.outputs})
    allowed = b4.one(f"{CR}:ConfiguredTable").input("analysisRules.0.policy.v1.custom.allowedAnalyses")
    sql = [t["arn"] for t in a3.outputs["analysis_templates"].values()]
    assert allowed == sorted(sql + [jobs["joint_mix"]["arn"]])  # not own_only: it never reads org B's table
