"""`history`, `budget` and `status`: pagination and what the analyst sees."""
from __future__ import annotations

import datetime as dt
import io
import json

import boto3
import pytest
from botocore.stub import Stubber

from queryrunner.cli import main

REGION = "eu-west-2"
ACCOUNT = "444455556666"
MEMBERSHIP_ID = "7c6b5a49-3827-4165-9f4e-3d2c1b0a9f8e"
COLLABORATION_ID = "8d7c6b5a-4938-4276-8a5f-4e3d2c1b0a9f"
MEMBERSHIP_ARN = f"arn:aws:cleanrooms:{REGION}:{ACCOUNT}:membership/{MEMBERSHIP_ID}"
COLLABORATION_ARN = f"arn:aws:cleanrooms:{REGION}:{ACCOUNT}:collaboration/{COLLABORATION_ID}"
TEMPLATE_ID = "6e5d4c3b-2a19-4807-b6f5-e4d3c2b1a098"
TEMPLATE_ARN = f"{MEMBERSHIP_ARN}/analysistemplate/{TEMPLATE_ID}"
PBT_ID = "5f4e3d2c-1b0a-4998-a776-5544332211ff"
T0 = dt.datetime(2025, 11, 20, 9, 30, tzinfo=dt.timezone.utc)
OUTPUTS = {"region": REGION, "membership_id": MEMBERSHIP_ID, "collaboration_id": COLLABORATION_ID,
           "analysis_templates": {"customer_segments": {"arn": TEMPLATE_ARN, "id": TEMPLATE_ID,
                                                        "parameters": [], "differential_privacy": False}}}
SESSION = boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")


def qid(i: int) -> str:
    return f"{i:08x}-0000-4000-8000-{i:012x}"


def summary(i: int, status: str) -> dict:
    return {"id": qid(i), "membershipId": MEMBERSHIP_ID, "membershipArn": MEMBERSHIP_ARN,
            "createTime": T0 + dt.timedelta(minutes=i), "status": status,
            "receiverConfigurations": [{"analysisType": "DIRECT_ANALYSIS"}]}


def budget(i: int, remaining: int) -> dict:
    return {"id": qid(100 + i), "privacyBudgetTemplateId": PBT_ID,
            "privacyBudgetTemplateArn": f"arn:aws:cleanrooms:{REGION}:{ACCOUNT}:privacybudgettemplate/{PBT_ID}",
            "membershipId": MEMBERSHIP_ID, "membershipArn": MEMBERSHIP_ARN, "collaborationId": COLLABORATION_ID,
            "collaborationArn": COLLABORATION_ARN, "type": "DIFFERENTIAL_PRIVACY", "createTime": T0, "updateTime": T0,
            "budget": {"differentialPrivacy": {"epsilon": 5, "aggregations": [
                {"type": "COUNT", "maxCount": 400, "remainingCount": remaining},
                {"type": "AVG", "maxCount": 200, "remainingCount": remaining // 2}]}}}


@pytest.fixture
def cli():
    client = SESSION.client("cleanrooms")
    stub = Stubber(client)
    out, err = io.StringIO(), io.StringIO()

    def run(*argv):
        with stub:
            code = main([*argv, "--outputs", "-"], stdin=io.StringIO(json.dumps(run.OUTPUTS)), stdout=out,
                        stderr=err, client_factory=lambda service, region: client)
        stub.assert_no_pending_responses()
        return code, out.getvalue(), err.getvalue()

    run.stub = stub
    run.OUTPUTS = OUTPUTS
    return run


def test_history_follows_pagination_and_respects_limit(cli):
    base = {"membershipIdentifier": MEMBERSHIP_ID, "maxResults": 3}
    cli.stub.add_response("list_protected_queries", {"protectedQueries": [summary(1, "SUCCESS"), summary(2, "FAILED")],
                                                     "nextToken": "page-2"}, base)
    cli.stub.add_response("list_protected_queries", {"protectedQueries": [summary(3, "STARTED"),
                                                                          summary(4, "SUCCESS")]},
                          {**base, "nextToken": "page-2"})

    code, out, _ = cli("history", "--limit", "3")

    assert code == 0
    lines = out.splitlines()
    assert lines[0].split(" | ")[:2] == ["query id                            ", "status "]
    assert [line.split(" | ")[1].strip() for line in lines[2:5]] == ["SUCCESS", "FAILED", "STARTED"]
    assert qid(4) not in out and "(3 rows)" in out
    assert "2025-11-20T09:33:00+00:00" in out


def test_history_status_filter_and_empty(cli):
    cli.stub.add_response("list_protected_queries", {"protectedQueries": []},
                          {"membershipIdentifier": MEMBERSHIP_ID, "maxResults": 20, "status": "FAILED"})
    code, out, _ = cli("history", "--status", "FAILED")
    assert code == 0 and "no protected queries for this membership" in out


ACCESS_PARAMS = {"membershipIdentifier": MEMBERSHIP_ID, "privacyBudgetType": "ACCESS_BUDGET"}
RETAIL_ASSOC = f"{MEMBERSHIP_ARN}/configuredtableassociation/3c2b1a09-8f7e-4d6c-b5a4-938271605f4e"
MEDIA_ASSOC = ("arn:aws:cleanrooms:eu-west-2:777788889999:membership/2b1a0998-7f6e-4d5c-a4b3-f2e1d0c9b8a7/"
               "configuredtableassociation/9e8d7c6b-5a49-4382-b716-05f4e3d2c1b0")


def access_budget(i: int, arn: str, details: list[dict], aggregate: int) -> dict:
    return {"id": qid(200 + i), "privacyBudgetTemplateId": PBT_ID,
            "privacyBudgetTemplateArn": f"arn:aws:cleanrooms:{REGION}:{ACCOUNT}:privacybudgettemplate/{PBT_ID}",
            "membershipId": MEMBERSHIP_ID, "membershipArn": MEMBERSHIP_ARN, "collaborationId": COLLABORATION_ID,
            "collaborationArn": COLLABORATION_ARN, "type": "ACCESS_BUDGET", "createTime": T0, "updateTime": T0,
            "budget": {"accessBudget": {"resourceArn": arn, "details": details,
                                        "aggregateRemainingBudget": aggregate}}}


DAY = {"startTime": T0, "endTime": T0 + dt.timedelta(days=1), "remainingBudget": 3, "budget": 10,
       "budgetType": "CALENDAR_DAY", "autoRefresh": "ENABLED"}
LIFETIME = {"startTime": T0, "remainingBudget": 57, "budget": 100, "budgetType": "LIFETIME"}


def test_budget_lists_every_page(cli):
    params = {"membershipIdentifier": MEMBERSHIP_ID, "privacyBudgetType": "DIFFERENTIAL_PRIVACY"}
    cli.stub.add_response("list_privacy_budgets", {"privacyBudgetSummaries": [budget(1, 300)], "nextToken": "t2"},
                          params)
    cli.stub.add_response("list_privacy_budgets", {"privacyBudgetSummaries": [budget(2, 40)]},
                          {**params, "nextToken": "t2"})
    cli.stub.add_response("list_privacy_budgets", {"privacyBudgetSummaries": []}, ACCESS_PARAMS)

    code, out, _ = cli("budget")

    assert code == 0
    dp_table = out.split("\n\n")[0]  # the differential-privacy table comes first, as before
    rows = [[c.strip() for c in line.split(" | ")] for line in dp_table.splitlines()[2:-1]]
    assert [qid(101), "5", "AVG", "150", "200", "75.0"] in rows
    assert [qid(102), "5", "COUNT", "40", "400", "10.0"] in rows
    assert dp_table.endswith("(4 rows)")
    assert "no access budgets in this collaboration" in out


def collaboration_budget(i: int, remaining: int) -> dict:
    """A CollaborationPrivacyBudgetSummary: the same budget, named by the collaboration, not a membership."""
    member = budget(i, remaining)
    return {k: member[k] for k in ("id", "privacyBudgetTemplateId", "privacyBudgetTemplateArn", "collaborationId",
                                   "collaborationArn", "type", "createTime", "updateTime", "budget")} | {
        "creatorAccountId": ACCOUNT}


def test_a_producers_stack_reads_the_collaboration_wide_budgets(cli):
    cli.OUTPUTS = {**OUTPUTS, "roles": ["data_producer"]}
    params = {"collaborationIdentifier": COLLABORATION_ID, "privacyBudgetType": "DIFFERENTIAL_PRIVACY"}
    cli.stub.add_response("list_collaboration_privacy_budgets", {
        "collaborationPrivacyBudgetSummaries": [collaboration_budget(1, 100)]}, params)
    cli.stub.add_response("list_collaboration_privacy_budgets", {"collaborationPrivacyBudgetSummaries": []},
                          {**params, "privacyBudgetType": "ACCESS_BUDGET"})

    code, out, err = cli("budget")

    assert code == 0, err
    rows = [[c.strip() for c in line.split(" | ")] for line in out.split("\n\n")[0].splitlines()[2:-1]]
    assert [qid(101), "5", "COUNT", "100", "400", "25.0"] in rows
    assert "ListCollaborationPrivacyBudgets" in err and "this stack does not query" in err


def test_budget_none(cli):
    cli.stub.add_response("list_privacy_budgets", {"privacyBudgetSummaries": []},
                          {"membershipIdentifier": MEMBERSHIP_ID, "privacyBudgetType": "DIFFERENTIAL_PRIVACY"})
    cli.stub.add_response("list_privacy_budgets", {"privacyBudgetSummaries": []}, ACCESS_PARAMS)
    code, out, _ = cli("budget")
    assert code == 0 and "no differential-privacy budgets" in out and "no access budgets" in out


def test_budget_lists_access_budgets_per_table(cli):
    """Tables are named from the output access_budgets when it has them, else by the association id."""
    cli.OUTPUTS = {**OUTPUTS, "access_budgets": {"retail_purchases": RETAIL_ASSOC}}
    cli.stub.add_response("list_privacy_budgets", {"privacyBudgetSummaries": [budget(1, 300)]},
                          {"membershipIdentifier": MEMBERSHIP_ID, "privacyBudgetType": "DIFFERENTIAL_PRIVACY"})
    cli.stub.add_response("list_privacy_budgets", {"privacyBudgetSummaries": [
        access_budget(1, RETAIL_ASSOC, [DAY, LIFETIME], 3)], "nextToken": "t2"}, ACCESS_PARAMS)
    cli.stub.add_response("list_privacy_budgets", {"privacyBudgetSummaries": [
        access_budget(2, MEDIA_ASSOC, [{**LIFETIME, "remainingBudget": 0}], 0)]}, {**ACCESS_PARAMS, "nextToken": "t2"})

    code, out, _ = cli("budget")

    assert code == 0
    dp_table, access = out.split("\n\n")
    assert dp_table.endswith("(2 rows)") and "COUNT" in dp_table
    lines = access.splitlines()
    assert lines[0] == "== access budgets (how many more times each table may be used) =="
    assert [c.strip() for c in lines[1].split(" | ")] == ["table", "budget type", "remaining", "budget",
                                                         "period start", "period end", "usable now"]
    rows = [[c.strip() for c in line.split(" | ")] for line in lines[3:-1]]
    assert rows == [
        ["9e8d7c6b-5a49-4382-b716-05f4e3d2c1b0", "LIFETIME", "0", "100", "2025-11-20T09:30:00+00:00", "-", "0"],
        ["retail_purchases", "CALENDAR_DAY", "3", "10", "2025-11-20T09:30:00+00:00", "2025-11-21T09:30:00+00:00",
         "3"],
        ["retail_purchases", "LIFETIME", "57", "100", "2025-11-20T09:30:00+00:00", "-", "3"],
    ]


def test_status_shows_template_name_params_and_error(cli):
    cli.stub.add_response("get_protected_query", {"protectedQuery": {
        "id": qid(9), "membershipId": MEMBERSHIP_ID, "membershipArn": MEMBERSHIP_ARN, "createTime": T0,
        "status": "FAILED", "sqlParameters": {"analysisTemplateArn": TEMPLATE_ARN, "parameters": {"min_orders": "2"}},
        "statistics": {"totalDurationInMillis": 61500},
        "error": {"code": "RESOURCE_ACCESS_DENIED", "message": "Cannot read table retail_purchases",
                  "retry": {"retryable": False}}}},
        {"membershipIdentifier": MEMBERSHIP_ID, "protectedQueryIdentifier": qid(9)})

    code, out, _ = cli("status", qid(9))

    assert code == 1  # the query failed
    assert "template         | customer_segments" in out
    assert "param min_orders | 2" in out and "duration         | 61.5s" in out
    assert "RESOURCE_ACCESS_DENIED: Cannot read table retail_purchases" in out


def test_status_shows_compute_billing_and_receivers(cli):
    cli.stub.add_response("get_protected_query", {"protectedQuery": {
        "id": qid(8), "membershipId": MEMBERSHIP_ID, "membershipArn": MEMBERSHIP_ARN, "createTime": T0,
        "status": "SUCCESS", "sqlParameters": {"analysisTemplateArn": TEMPLATE_ARN, "parameters": {}},
        "computeConfiguration": {"worker": {"type": "CR.4X", "number": 32}},
        "statistics": {"totalDurationInMillis": 90000, "billedResourceUtilization": {"units": 6.4}},
        "result": {"output": {"distribute": {"s3": {"location": "s3://bucket/results/customer_segments/q8/"},
                                             "memberList": [{"accountId": "777788889999"},
                                                            {"accountId": "222233334444"}]}}}}},
        {"membershipIdentifier": MEMBERSHIP_ID, "protectedQueryIdentifier": qid(8)})

    code, out, _ = cli("status", qid(8))

    assert code == 0
    fields = {line.split(" | ")[0].strip(): line.split(" | ")[1].strip() for line in out.splitlines()[2:]}
    assert fields["compute"] == "CR.4X x 32 workers = 256 CRPU"
    assert fields["billed"] == "6.4 CRPU-hours"
    assert fields["result"] == "s3://bucket/results/customer_segments/q8/"
    assert fields["received by"] == "777788889999, 222233334444"


def test_status_without_compute_says_the_service_default(cli):
    cli.stub.add_response("get_protected_query", {"protectedQuery": {
        "id": qid(7), "membershipId": MEMBERSHIP_ID, "membershipArn": MEMBERSHIP_ARN, "createTime": T0,
        "status": "STARTED"}}, {"membershipIdentifier": MEMBERSHIP_ID, "protectedQueryIdentifier": qid(7)})
    code, out, _ = cli("status", qid(7))
    assert code == 0
    assert "compute | not reported (with none sent, the service's default: CR.1X)" in out
    assert "billed" not in out and "received by" not in out


def test_status_api_error_is_reported(cli):
    cli.stub.add_client_error("get_protected_query", "ResourceNotFoundException", "Protected query not found",
                              404, expected_params={"membershipIdentifier": MEMBERSHIP_ID,
                                                    "protectedQueryIdentifier": qid(5)})
    code, _, err = cli("status", qid(5))
    assert code == 1
    assert "GetProtectedQuery failed: ResourceNotFoundException: Protected query not found" in err
