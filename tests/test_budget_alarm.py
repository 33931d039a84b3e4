"""The data owner's budget alarm: the function (botocore Stubber, the real cleanrooms and cloudwatch models),
the resources that run it, and the permissions of both."""

from __future__ import annotations

import datetime as dt
import json

import boto3
import pulumi
import pytest
from botocore.stub import Stubber

from lambdas import budget_metric
from offline import deployer_policy as dp
from tests.harness import PROJECT, run_stack, stack_ref
from tests.policy_support import evaluate
from tests.support.iam_lint import lint_policy

REGION, A, B = "us-east-1", "111111111111", "222222222222"
COLLABORATION_ID = "8d7c6b5a-4938-4276-8a5f-4e3d2c1b0a9f"
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


def summary(i: int, aggregations: list[tuple[str, int, int]]) -> dict:
    bid = f"{i:08x}-0000-4000-8000-{i:012x}"
    return {"id": bid, "privacyBudgetTemplateId": bid,
            "privacyBudgetTemplateArn": f"arn:aws:cleanrooms:{REGION}:{B}:membership/{bid}/privacybudgettemplate/{bid}",
            "collaborationId": COLLABORATION_ID,
            "collaborationArn": f"arn:aws:cleanrooms:{REGION}:{A}:collaboration/{COLLABORATION_ID}",
            "creatorAccountId": B, "type": "DIFFERENTIAL_PRIVACY", "createTime": T0, "updateTime": T0,
            "budget": {"differentialPrivacy": {"epsilon": 10, "aggregations": [
                {"type": t, "maxCount": mx, "remainingCount": rem} for t, mx, rem in aggregations]}}}


def clients():
    session = boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    rooms, watch = session.client("cleanrooms"), session.client("cloudwatch")
    return rooms, watch, Stubber(rooms), Stubber(watch)


def test_the_function_publishes_the_remaining_share_and_the_lowest():
    rooms, watch, rooms_stub, watch_stub = clients()
    listing = {"collaborationIdentifier": COLLABORATION_ID, "privacyBudgetType": "DIFFERENTIAL_PRIVACY"}
    rooms_stub.add_response("list_collaboration_privacy_budgets", {
        "collaborationPrivacyBudgetSummaries": [summary(1, [("COUNT", 400, 100), ("SUM", 200, 150)])],
        "nextToken": "2"}, listing)
    rooms_stub.add_response("list_collaboration_privacy_budgets", {
        "collaborationPrivacyBudgetSummaries": [summary(2, [("COUNT", 400, 300)])]}, {**listing, "nextToken": "2"})
    collaboration = {"Name": "CollaborationId", "Value": COLLABORATION_ID}
    watch_stub.add_response("put_metric_data", {}, {"Namespace": "CleanRooms/PrivacyBudget", "MetricData": [
        {"MetricName": "RemainingPercent", "Dimensions": [collaboration, {"Name": "Aggregation", "Value": "COUNT"}],
         "Value": 25.0, "Unit": "Percent"},
        {"MetricName": "RemainingPercent", "Dimensions": [collaboration, {"Name": "Aggregation", "Value": "SUM"}],
         "Value": 75.0, "Unit": "Percent"},
        {"MetricName": "MinRemainingPercent", "Dimensions": [collaboration], "Value": 25.0, "Unit": "Percent"}]})
    with rooms_stub, watch_stub:
        result = budget_metric.publish(rooms, watch, COLLABORATION_ID)
    rooms_stub.assert_no_pending_responses()
    watch_stub.assert_no_pending_responses()
    assert result == {"collaboration": COLLABORATION_ID, "aggregations": {"COUNT": 25.0, "SUM": 75.0}, "lowest": 25.0}


def test_without_a_budget_nothing_is_published_so_the_alarm_says_insufficient_data():
    rooms, watch, rooms_stub, watch_stub = clients()
    rooms_stub.add_response("list_collaboration_privacy_budgets", {"collaborationPrivacyBudgetSummaries": []})
    with rooms_stub, watch_stub:  # no put_metric_data queued: a call would fail the test
        assert budget_metric.publish(rooms, watch, COLLABORATION_ID)["lowest"] is None


@pytest.fixture(scope="module")
def alarmed(bootstrap):
    return run_stack("org-b", overrides={"budgetAlarm": {"belowPercent": 25, "scheduleMinutes": 30,
                                                         "emails": ["dpo@example.com"]}},
                     peer_outputs={stack_ref("org-a"): bootstrap.a3.outputs})


def test_events_and_a_schedule_invoke_the_function_and_the_alarm_notifies_an_encrypted_topic(alarmed, bootstrap):
    run = alarmed
    function = run.one("aws:lambda/function:Function")
    assert function.inputs["runtime"] == "python3.12" and function.inputs["handler"] == "budget_metric.handler"
    collaboration_id = bootstrap.a3.outputs["collaboration_id"]
    assert function.input("environment.variables") == {"COLLABORATION_ID": collaboration_id}
    patterns = {r.name: r.inputs for r in run.of_type("aws:cloudwatch/eventRule:EventRule")}
    assert json.loads(patterns["org-b-budget-alarm-query-ended"]["eventPattern"]) == {
        "source": ["aws.cleanrooms"], "detail-type": ["Protected Query Succeeded", "Protected Query Failed"]}
    assert patterns["org-b-budget-alarm-schedule"]["scheduleExpression"] == "rate(30 minutes)"
    permissions = run.of_type("aws:lambda/permission:Permission")
    assert len(permissions) == 2 and all(p.inputs["principal"] == "events.amazonaws.com" and
                                         p.inputs["sourceArn"].startswith(f"arn:aws:events:{REGION}:{B}:rule/")
                                         for p in permissions)
    alarm = run.one("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert (alarm.inputs["metricName"], alarm.inputs["threshold"], alarm.inputs["comparisonOperator"]) == (
        "MinRemainingPercent", 25, "LessThanThreshold")
    assert alarm.inputs["dimensions"] == {"CollaborationId": collaboration_id} and alarm.inputs["period"] == 1800
    topic = run.one("aws:sns/topic:Topic")
    assert alarm.inputs["alarmActions"] == alarm.inputs["insufficientDataActions"] == [topic.state["arn"]]
    assert topic.inputs["kmsMasterKeyId"] == run.named("org-b-budget-alarm-topic-key").state["arn"]
    assert run.one("aws:sns/topicSubscription:TopicSubscription").inputs["endpoint"] == "dpo@example.com"
    assert run.one("aws:cloudwatch/logGroup:LogGroup").inputs["retentionInDays"] == 365


def test_the_functions_role_can_do_what_it_does_and_nothing_else(alarmed, bootstrap):
    policy = json.loads(alarmed.named("org-b-budget-alarm-function-policy").inputs["policy"])
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["ReadTheCollaborationsBudgets"]["Resource"] == (
        f"arn:aws:cleanrooms:{REGION}:{A}:collaboration/{bootstrap.a3.outputs['collaboration_id']}")
    assert by_sid["PublishBudgetMetricsOnly"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "CleanRooms/PrivacyBudget"}}
    assert lint_policy(policy) == []
    trust = json.loads(alarmed.named("org-b-budget-alarm-function").inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Condition"] == {"StringEquals": {"aws:SourceAccount": B}}
    assert lint_policy(trust, kind="trust") == []
    key = json.loads(alarmed.named("org-b-budget-alarm-topic-key").inputs["policy"])
    assert lint_policy(key, kind="resource") == []


def test_the_policy_pack_passes_the_stack_with_the_alarm(alarmed):
    assert evaluate(alarmed).violations == []


def test_the_deployer_policy_covers_the_alarm(alarmed):
    document = dp.build(dp.collect("org-b", [alarmed]))["deployer"]
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    assert by_sid["LambdaFunctionsOfThisStack"]["Resource"] == [
        f"arn:aws:lambda:{REGION}:{B}:function:org-b-cleanrooms-budget-metric"]
    assert "iam:PassRole" in by_sid["PassRolesToLambda"]["Action"]
    assert by_sid["PassRolesToLambda"]["Condition"] == {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}
    mine = {"LambdaFunctionsOfThisStack", "EventsRulesOfThisStack", "CloudWatchAlarmsOfThisStack",
            "SnsTopicsOfThisStack", "SnsSubscriptionsInThisRegion", "LogsLogGroupsOfThisStack",
            "LogsFindLogGroupsInThisRegion", "PassRolesToLambda"}
    assert mine <= set(by_sid)
    unknown = {a for s in document["Statement"] for a in s["Action"] if dp.privilege(a) is None}
    known = dict(document, Statement=[dict(s, Action=[a for a in s["Action"] if a not in unknown])
                                      for s in document["Statement"] if s["Sid"] in mine])
    assert lint_policy(known) == []


@pytest.mark.parametrize("alarm, key, fragment", [
    ({"belowPercent": 0}, "budgetAlarm.belowPercent", "1 to 99"),
    ({"scheduleMinutes": 1}, "budgetAlarm.scheduleMinutes", "5 to 1440"),
    ({"emails": ["not-an-address"]}, "budgetAlarm.emails[0]", "an e-mail address"),
])
def test_bad_alarm_config_is_one_line_naming_the_key(alarm, key, fragment):
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-b", overrides={"budgetAlarm": alarm})
    message = str(info.value).splitlines()[0]
    assert message.startswith(f"config '{PROJECT}:{key}'") and fragment in message, message


def test_no_alarm_before_the_membership_exists():
    assert not run_stack("org-b", overrides={"budgetAlarm": {}}).of_type("aws:lambda/function:Function")


def test_the_functions_clients_have_explicit_timeouts_that_fit_its_own(monkeypatch):
    """botocore's defaults (60 s to connect, 60 s to read) would outlast the function's 60 s timeout on one try."""
    import boto3

    made = []
    monkeypatch.setenv("COLLABORATION_ID", COLLABORATION_ID)
    monkeypatch.setattr(boto3, "client", lambda service, config=None: made.append((service, config)) or service)
    monkeypatch.setattr(budget_metric, "publish", lambda rooms, watch, collaboration: (rooms, watch, collaboration))
    assert budget_metric.handler({}, None) == ("cleanrooms", "cloudwatch", COLLABORATION_ID)
    assert [service for service, _ in made] == ["cleanrooms", "cloudwatch"]
    for _, config in made:
        assert (config.connect_timeout, config.read_timeout) == (3.0, 10.0)
        assert config.retries == {"mode": "standard", "total_max_attempts": 3}
        # the worst case of every attempt timing out, for one call, stays inside the function's timeout
        assert config.retries["total_max_attempts"] * (config.connect_timeout + config.read_timeout) < 60
