"""`python -m queryrunner audit`: the compliance report, from AWS (botocore's Stubber: the real cleanrooms and
cloudtrail models) and from the local clean room's records and ledger."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from queryrunner import audit
from queryrunner.cli import main

REGION, ACCOUNT = "us-east-1", "111111111111"
MEMBERSHIP_ID = "7c6b5a49-3827-4165-9f4e-3d2c1b0a9f8e"
COLLABORATION_ID = "8d7c6b5a-4938-4276-8a5f-4e3d2c1b0a9f"
MEMBERSHIP_ARN = f"arn:aws:cleanrooms:{REGION}:{ACCOUNT}:membership/{MEMBERSHIP_ID}"
TEMPLATE_ID = "6e5d4c3b-2a19-4807-b6f5-e4d3c2b1a098"
TEMPLATE_ARN = f"{MEMBERSHIP_ARN}/analysistemplate/{TEMPLATE_ID}"
MEDIA_ARN = (f"arn:aws:cleanrooms:{REGION}:222222222222:membership/{COLLABORATION_ID}/configuredtableassociation/"
             f"{TEMPLATE_ID}")
BUCKET = "org-a-cleanrooms-results-111111111111"
NOW = dt.datetime.now(dt.timezone.utc)
OUTPUTS = {"region": REGION, "membership_id": MEMBERSHIP_ID, "collaboration_id": COLLABORATION_ID,
           "results_bucket": BUCKET, "results_region": REGION, "results_prefix": "results", "result_format": "CSV",
           "access_budgets": {"media_engagement": MEDIA_ARN},
           "analysis_templates": {"channel_reach": {"arn": TEMPLATE_ARN, "id": TEMPLATE_ID, "differential_privacy": True,
                                                    "parameters": [], "tables": ["retail_purchases", "media_engagement"]}}}
SESSION = boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
PRINCIPAL = f"arn:aws:sts::{ACCOUNT}:assumed-role/analyst/alice@example.com"


def qid(i: int) -> str:
    return f"{i:08x}-0000-4000-8000-{i:012x}"


def summary(i: int, age: dt.timedelta, status: str = "SUCCESS") -> dict:
    return {"id": qid(i), "membershipId": MEMBERSHIP_ID, "membershipArn": MEMBERSHIP_ARN, "createTime": NOW - age,
            "status": status, "receiverConfigurations": [{"analysisType": "DIRECT_ANALYSIS"}]}


def query(i: int, age: dt.timedelta, status: str = "SUCCESS") -> dict:
    return {"protectedQuery": {
        "id": qid(i), "membershipId": MEMBERSHIP_ID, "membershipArn": MEMBERSHIP_ARN, "createTime": NOW - age,
        "status": status, "sqlParameters": {"analysisTemplateArn": TEMPLATE_ARN, "parameters": {"min_sessions": "2"}},
        "resultConfiguration": {"outputConfiguration": {"distribute": {"locations": [
            {"s3": {"resultFormat": "CSV", "bucket": BUCKET, "keyPrefix": "results/channel_reach"}},
            {"member": {"accountId": "333333333333"}}]}}},
        "differentialPrivacy": {"sensitivityParameters": [
            {"aggregationType": "COUNT", "aggregationExpression": "*", "userContributionLimit": 1},
            {"aggregationType": "SUM", "aggregationExpression": "r.purchase_amount", "userContributionLimit": 1,
             "minColumnValue": 0.0, "maxColumnValue": 5000.0}]}}}


def started_by(i: int, principal: str) -> dict:
    record = {"userIdentity": {"type": "AssumedRole", "arn": principal}, "eventName": "StartProtectedQuery",
              "responseElements": {"protectedQuery": {"id": qid(i), "status": "SUBMITTED"}}}
    return {"EventId": f"event-{i}", "EventName": "StartProtectedQuery", "EventTime": NOW,
            "CloudTrailEvent": json.dumps(record)}


class Clients:
    def __init__(self):
        self.cleanrooms, self.cloudtrail = SESSION.client("cleanrooms"), SESSION.client("cloudtrail")
        self.rooms, self.trail = Stubber(self.cleanrooms), Stubber(self.cloudtrail)

    def __call__(self, service: str, region: str):
        return {"cleanrooms": self.cleanrooms, "cloudtrail": self.cloudtrail}[service]

    def run(self, *argv: str, outputs: dict = OUTPUTS) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with self.rooms, self.trail:
            code = main([*argv, "--outputs", "-"], stdin=io.StringIO(json.dumps(outputs)), stdout=out, stderr=err,
                        client_factory=self)
        self.rooms.assert_no_pending_responses()
        self.trail.assert_no_pending_responses()
        return code, out.getvalue(), err.getvalue()


@pytest.fixture
def clients():
    return Clients()


def _queue(clients: Clients, trail_denied: bool = False) -> None:
    m = {"membershipIdentifier": MEMBERSHIP_ID}
    if trail_denied:
        clients.trail.add_client_error("lookup_events", "AccessDeniedException", "not authorized")
    else:
        clients.trail.add_response("lookup_events", {"Events": [started_by(1, PRINCIPAL)]})
        clients.trail.add_response("lookup_events", {"Events": []})
    clients.rooms.add_response("list_protected_queries", {"protectedQueries": [
        summary(1, dt.timedelta(days=2)), summary(2, dt.timedelta(days=3), "FAILED"),
        summary(3, dt.timedelta(days=45))]}, m)
    clients.rooms.add_response("get_protected_query", query(1, dt.timedelta(days=2)),
                               {**m, "protectedQueryIdentifier": qid(1)})
    clients.rooms.add_response("get_protected_query", query(2, dt.timedelta(days=3), "FAILED"),
                               {**m, "protectedQueryIdentifier": qid(2)})
    clients.rooms.add_response("list_protected_jobs", {"protectedJobs": []}, m)


def _rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open(encoding="utf-8")))


def test_the_report_has_every_query_in_the_window_with_who_cost_and_destinations(clients, tmp_path):
    _queue(clients)
    code, out, err = clients.run("audit", "--since", "30d", "--html", "--out", str(tmp_path))
    assert code == 0, err
    rows = _rows(tmp_path / "audit" / "audit.csv")
    assert [r["id"] for r in rows] == [qid(2), qid(1)]  # oldest first; the 45-day-old query is outside the window
    first = rows[1]
    assert first["who"] == PRINCIPAL and first["template"] == "channel_reach" and first["status"] == "SUCCESS"
    assert json.loads(first["parameters"]) == {"min_sessions": "2"}
    assert first["destinations"] == f"s3://{BUCKET}/results/channel_reach;member 333333333333"
    assert first["regions"] == REGION
    assert json.loads(first["dp_aggregations"]) == {"COUNT": 1, "SUM": 1}
    assert first["access_budget_tables"] == "media_engagement"
    assert rows[0]["who"] == f"account {ACCOUNT}"  # no CloudTrail event for it: the membership's account
    totals = _rows(tmp_path / "audit" / "audit-totals.csv")
    assert {"by": "template", "name": "channel_reach", "runs": "2", "succeeded": "1", "failed": "1",
            "dp_aggregations": "4", "budget_spent": "", "access_budget_uses": "1"} in totals
    assert {r["name"] for r in totals if r["by"] == "member"} == {PRINCIPAL, f"account {ACCOUNT}"}
    assert "channel_reach" in out and "audit written:" in err
    page = (tmp_path / "audit" / "audit.html").read_text()
    assert page.count('class="point"') == 2 and not re.search(r"""(src|href)=["']?(https?:)?//""", page)


def test_without_cloudtrail_access_the_member_is_the_account_and_it_says_so(clients, tmp_path):
    _queue(clients, trail_denied=True)
    code, _, err = clients.run("audit", "--out", str(tmp_path))
    assert code == 0
    assert "WARNING: CloudTrail event history unavailable" in err
    assert {r["who"] for r in _rows(tmp_path / "audit" / "audit.csv")} == {f"account {ACCOUNT}"}
    assert not (tmp_path / "audit" / "audit.html").exists()  # only with --html


@pytest.mark.parametrize("since", ["30", "30 d", "1y", "0d", "-3d", "1.5d", "100000d", ""])
def test_a_since_that_is_not_a_duration_is_refused_before_anything(since, clients, tmp_path):
    code, out, err = clients.run("audit", f"--since={since}", "--out", str(tmp_path))
    assert code == 2 and out == ""
    assert err.strip() == ("error: --since must be a duration: a whole number 1-99999 followed by h, d or w (12h, "
                           f"30d, 2w); got {since!r}")
    assert not (tmp_path / "audit").exists()


def test_durations():
    assert audit.parse_since("12h") == dt.timedelta(hours=12)
    assert audit.parse_since("30d") == dt.timedelta(days=30)
    assert audit.parse_since("2w") == dt.timedelta(days=14)


@pytest.fixture(scope="module")
def local_report(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("audit")
    common = ["--local", "--out", str(tmp / "results"), "--state-dir", str(tmp / "state")]
    for template in ("channel_reach", "customer_segments"):
        assert main(["run", template, "--seed", "3", *common], stdout=io.StringIO(), stderr=io.StringIO()) == 0
    assert main(["audit", "--html", *common], stdout=io.StringIO(), stderr=io.StringIO()) == 0
    return tmp


def test_the_local_report_joins_run_records_and_the_ledger(local_report):
    rows = _rows(local_report / "results" / "audit" / "audit.csv")
    assert [r["template"] for r in rows] == ["channel_reach", "customer_segments"]
    ledger = json.loads((local_report / "state" / "org-a" / "privacy-budget.json").read_text())
    charged = {c["run_id"]: c["fraction"] for c in ledger["charges"]}
    assert {r["id"]: float(r["budget_spent"]) for r in rows} == pytest.approx(charged, abs=1e-6)
    assert all(r["who"] == "org-a" and r["regions"] == "local" and Path(r["destinations"]).is_file() for r in rows)
    member = next(r for r in _rows(local_report / "results" / "audit" / "audit-totals.csv") if r["by"] == "member")
    assert float(member["budget_spent"]) == pytest.approx(sum(charged.values()), abs=1e-6)


def test_the_budget_chart_climbs_with_each_charge(local_report):
    entries = [audit.Entry(at=dt.datetime(2026, 1, d, tzinfo=dt.timezone.utc), kind="query", id=str(d), who="a",
                           membership="m", template="t", status="SUCCESS", budget_spent=0.1) for d in (1, 2, 3)]
    assert [round(v, 6) for _, v in audit.budget_points(entries)] == [10.0, 20.0, 30.0]
    unpriced = [audit.Entry(at=e.at, kind="query", id=e.id, who="a", membership="m", template="t", status="SUCCESS",
                            dp_aggregations={"COUNT": 2}) for e in entries]
    assert [v for _, v in audit.budget_points(unpriced)] == [2.0, 4.0, 6.0]
