"""Results to several receivers (distribute), and the access-budget pre-check of `run`.

Every request and response goes through botocore's Stubber (the real cleanrooms model); S3 is moto.
"""
from __future__ import annotations

import copy
import datetime as dt

from tests.test_queryrunner_run import (  # noqa: F401 (env is the fixture)
    ACCOUNT, BUCKET, COLLABORATION_ID, CREATED, CSV_PART_1, MEMBERSHIP_ARN, MEMBERSHIP_ID, OUTPUTS, PBT_ID, Q1, Q2,
    REACH_ARN, REGION, env, get_params, query, start_params, success)

R1, R2 = "222233334444", "555566667777"
MEDIA_ASSOC = ("arn:aws:cleanrooms:us-east-1:777788889999:membership/2b1a0998-7f6e-4d5c-a4b3-f2e1d0c9b8a7/"
               "configuredtableassociation/9e8d7c6b-5a49-4382-b716-05f4e3d2c1b0")
RETAIL_ASSOC = f"{MEMBERSHIP_ARN}/configuredtableassociation/3c2b1a09-8f7e-4d6c-b5a4-938271605f4e"


def distribute_params(receivers, **kw) -> dict:
    params = start_params(**kw)
    s3 = params["resultConfiguration"]["outputConfiguration"].pop("s3")
    params["resultConfiguration"]["outputConfiguration"]["distribute"] = {
        "locations": [{"s3": s3}] + [{"member": {"accountId": r}} for r in receivers]}
    return params


def distributed(qid: str, location: str, members, **kw) -> dict:
    output = {"distribute": {"s3": {"location": location}, "memberList": [{"accountId": m} for m in members]}}
    return query(qid, "SUCCESS", result={"output": output}, statistics={"totalDurationInMillis": 42000}, **kw)


def test_results_go_to_the_analysts_bucket_and_every_receiver(env):
    prefix = f"results/customer_segments/{Q1}/"
    env.s3.put_object(Bucket=BUCKET, Key=prefix + "part-00000.csv", Body=CSV_PART_1.encode())
    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED"), distribute_params([R1, R2]))
    env.stub.add_response("get_protected_query", distributed(Q1, f"s3://{BUCKET}/{prefix}", [R1, R2]), get_params(Q1))

    code = env.run("run", "customer_segments", outputs={**OUTPUTS, "result_receivers": [R1, R2]})

    assert code == 0, env.err
    assert f"results to s3://{BUCKET}/results/<template>/ as CSV, and to member accounts {R1}, {R2}" in env.err
    assert f"result at s3://{BUCKET}/{prefix}; also received by member accounts {R1}, {R2}" in env.err
    assert "WARNING" not in env.err
    assert "35-44" in env.out  # the analyst's own copy, read from distribute.s3.location


def test_a_receiver_missing_from_the_member_list_is_reported(env):
    key = f"results/customer_segments/{Q1}/result.csv"
    env.s3.put_object(Bucket=BUCKET, Key=key, Body=CSV_PART_1.encode())
    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED"), distribute_params([R1, R2]))
    env.stub.add_response("get_protected_query", distributed(Q1, f"s3://{BUCKET}/{key}", [R2]), get_params(Q1))

    assert env.run("run", "customer_segments", outputs={**OUTPUTS, "result_receivers": [R1, R2]}) == 0, env.err
    assert f"also received by member account {R2}" in env.err
    assert f"WARNING: Clean Rooms does not list member account {R1} among the receivers" in env.err


def test_no_distribute_sends_only_to_the_analysts_bucket(env):
    key = f"results/customer_segments/{Q1}/result.csv"
    env.s3.put_object(Bucket=BUCKET, Key=key, Body=CSV_PART_1.encode())
    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_query", success(Q1, f"s3://{BUCKET}/{key}"), get_params(Q1))

    # --no-distribute does not even read result_receivers (here one the service would refuse)
    outputs = {**OUTPUTS, "result_receivers": [ACCOUNT]}
    assert env.run("run", "customer_segments", "--no-distribute", outputs=outputs) == 0, env.err
    assert "received by" not in env.err and "member account" not in env.err


def test_an_empty_receiver_list_means_s3_only(env):
    key = f"results/customer_segments/{Q1}/result.csv"
    env.s3.put_object(Bucket=BUCKET, Key=key, Body=CSV_PART_1.encode())
    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_query", success(Q1, f"s3://{BUCKET}/{key}"), get_params(Q1))
    assert env.run("run", "customer_segments", outputs={**OUTPUTS, "result_receivers": []}) == 0, env.err


def test_success_without_a_location_for_the_analyst_is_an_error(env):
    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED"), distribute_params([R1]))
    env.stub.add_response("get_protected_query", query(Q1, "SUCCESS", result={"output": {"distribute": {
        "memberList": [{"accountId": R1}]}}}), get_params(Q1))

    assert env.run("run", "customer_segments", outputs={**OUTPUTS, "result_receivers": [R1]}) == 1
    assert "the service reported no S3 location for this runner's copy" in env.err


def test_receivers_with_the_runners_own_account_are_refused_before_anything_is_sent(env):
    assert env.run("run", "customer_segments", outputs={**OUTPUTS, "result_receivers": [R1, ACCOUNT]}) == 2
    assert (f"error: stack output 'result_receivers[1]' is {ACCOUNT}, this runner's own account (stack output "
            "'account_id')") in env.err
    assert env.created == []


def test_receivers_need_the_spark_engine(env):
    outputs = {**OUTPUTS, "result_receivers": [R1], "analytics_engine": "CLEAN_ROOMS_SQL"}
    assert env.run("run", "customer_segments", outputs=outputs) == 2
    assert "only with the Spark analytics engine" in env.err and env.created == []


# -- access budgets ------------------------------------------------------------------------

def access_summary(arn: str, aggregate: int, details: list[dict]) -> dict:
    return {"id": "5b6c7d8e-9f01-4234-8567-89abcdef0123", "privacyBudgetTemplateId": PBT_ID,
            "privacyBudgetTemplateArn": f"arn:aws:cleanrooms:{REGION}:{ACCOUNT}:privacybudgettemplate/{PBT_ID}",
            "membershipId": MEMBERSHIP_ID, "membershipArn": MEMBERSHIP_ARN, "collaborationId": COLLABORATION_ID,
            "collaborationArn": f"arn:aws:cleanrooms:{REGION}:{ACCOUNT}:collaboration/{COLLABORATION_ID}",
            "type": "ACCESS_BUDGET", "createTime": CREATED, "updateTime": CREATED,
            "budget": {"accessBudget": {"resourceArn": arn, "details": details, "aggregateRemainingBudget": aggregate}}}


DAY_USED_UP = {"startTime": CREATED, "endTime": CREATED + dt.timedelta(days=1), "remainingBudget": 0, "budget": 10,
               "budgetType": "CALENDAR_DAY", "autoRefresh": "ENABLED"}
LIFETIME = {"startTime": CREATED, "remainingBudget": 37, "budget": 100, "budgetType": "LIFETIME"}


def access_outputs(**extra) -> dict:
    outputs = copy.deepcopy(OUTPUTS)
    outputs["analysis_templates"]["customer_segments"]["tables"] = ["retail_purchases", "media_engagement"]
    outputs["analysis_templates"]["channel_reach"]["tables"] = ["media_engagement"]
    outputs["access_budgets"] = {"media_engagement": MEDIA_ASSOC, "retail_purchases": RETAIL_ASSOC}
    outputs.update(extra)
    return outputs


def queue_access(env, *summaries):
    env.stub.add_response("list_privacy_budgets", {"privacyBudgetSummaries": list(summaries)},
                          {"membershipIdentifier": MEMBERSHIP_ID, "privacyBudgetType": "ACCESS_BUDGET"})


def test_a_table_with_no_access_budget_left_stops_the_template_before_it_starts(env):
    queue_access(env, access_summary(MEDIA_ASSOC, 0, [DAY_USED_UP, LIFETIME]))

    code = env.run("run", "customer_segments", outputs=access_outputs())

    assert code == 1
    assert ("[customer_segments] refusing to run 'customer_segments': table 'media_engagement' has no access budget "
            "left (CALENDAR_DAY 0 of 10 left until 2025-11-26T10:00:00+00:00; LIFETIME 37 of 100 left)") in env.err
    assert env.out == ""  # start_protected_query was never called (the Stubber would have failed otherwise)


def test_access_budget_left_lets_the_template_run(env):
    queue_access(env, access_summary(MEDIA_ASSOC, 37, [{**DAY_USED_UP, "remainingBudget": 4}, LIFETIME]),
                 access_summary(RETAIL_ASSOC, 5, [LIFETIME]))
    key = f"results/customer_segments/{Q1}/result.csv"
    env.s3.put_object(Bucket=BUCKET, Key=key, Body=CSV_PART_1.encode())
    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_query", success(Q1, f"s3://{BUCKET}/{key}"), get_params(Q1))

    assert env.run("run", "customer_segments", outputs=access_outputs()) == 0, env.err
    assert "refusing" not in env.err and "WARNING" not in env.err


def test_run_all_refuses_only_the_templates_that_read_the_exhausted_table(env):
    outputs = access_outputs()
    del outputs["analysis_templates"]["dp_segments"]
    outputs["analysis_templates"]["channel_reach"]["tables"] = ["retail_purchases"]
    queue_access(env, access_summary(MEDIA_ASSOC, 0, [DAY_USED_UP]), access_summary(RETAIL_ASSOC, 1, [LIFETIME]))
    key = f"results/channel_reach/{Q2}/result.csv"
    env.s3.put_object(Bucket=BUCKET, Key=key, Body=CSV_PART_1.encode())
    reach = {"min_sessions": "1", "since": "2024-01-01"}
    env.stub.add_response("start_protected_query", query(Q2, "SUBMITTED", arn=REACH_ARN, params=reach),
                          start_params(arn=REACH_ARN, template="channel_reach", params=reach))
    env.stub.add_response("get_protected_query", success(Q2, f"s3://{BUCKET}/{key}", arn=REACH_ARN, params=reach),
                          get_params(Q2))

    code = env.run("run", "--all", "--param", "min_sessions=1", outputs=outputs)

    assert code == 1  # one template refused
    assert "refusing to run 'customer_segments'" in env.err
    summary = env.out.split("== summary ==")[1]
    assert "REFUSED" in summary and "ACCESS_BUDGET" in summary and "SUCCESS" in summary


def test_more_templates_than_uses_left_is_a_warning(env):
    outputs = access_outputs()
    del outputs["analysis_templates"]["dp_segments"]
    queue_access(env, access_summary(MEDIA_ASSOC, 1, [{**DAY_USED_UP, "remainingBudget": 1}]))
    for qid, template, arn, params in [(Q1, "customer_segments", None, None),
                                       (Q2, "channel_reach", REACH_ARN, {"min_sessions": "1", "since": "2024-01-01"})]:
        kw = {"arn": arn} if arn else {}
        env.stub.add_response("start_protected_query", query(qid, "SUBMITTED", params=params, **kw),
                              start_params(template=template, params=params, **kw))
        env.stub.add_response("get_protected_query", query(qid, "FAILED", params=params, error={
            "code": "RESOURCE_ACCESS_DENIED", "message": "access budget exhausted"}, **kw), get_params(qid))

    code = env.run("run", "--all", "--max-concurrency", "1", "--param", "min_sessions=1", outputs=outputs)

    assert code == 1
    assert ("WARNING: table 'media_engagement' can be used 1 more time but 2 templates read it "
            "(customer_segments, channel_reach)") in env.err


def test_without_the_tables_or_the_access_budgets_output_there_is_no_pre_check(env):
    key = f"results/customer_segments/{Q1}/result.csv"
    env.s3.put_object(Bucket=BUCKET, Key=key, Body=CSV_PART_1.encode())
    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_query", success(Q1, f"s3://{BUCKET}/{key}"), get_params(Q1))
    outputs = access_outputs()
    del outputs["access_budgets"]
    assert env.run("run", "customer_segments", outputs=outputs) == 0, env.err  # no list_privacy_budgets queued


def test_an_access_budget_listing_error_is_a_warning_not_a_failure(env):
    env.stub.add_client_error("list_privacy_budgets", "AccessDeniedException", "not allowed", 403,
                              expected_params={"membershipIdentifier": MEMBERSHIP_ID,
                                               "privacyBudgetType": "ACCESS_BUDGET"})
    key = f"results/customer_segments/{Q1}/result.csv"
    env.s3.put_object(Bucket=BUCKET, Key=key, Body=CSV_PART_1.encode())
    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_query", success(Q1, f"s3://{BUCKET}/{key}"), get_params(Q1))

    assert env.run("run", "customer_segments", outputs=access_outputs()) == 0, env.err
    assert ("WARNING: could not check the tables' access budgets (AccessDeniedException: not allowed); Clean Rooms "
            "still refuses") in env.err
