"""Starting at most once, piece by piece: classifying failed starts, matching records, the journal, the client config.

The end-to-end behaviour over real HTTP is tests/test_queryrunner_faults.py; here Stubber (which validates every
request and response against the botocore model) and plain values pin the rules each piece follows.
"""
from __future__ import annotations

import datetime as dt
import json
import socket

import pytest
from botocore.exceptions import (ClientError, ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError,
                                 NoCredentialsError, ReadTimeoutError)
from botocore.stub import Stubber

from queryrunner import cloud, reconcile
from queryrunner import journal as jr
from tests.test_queryrunner_run import (BUCKET, MEMBERSHIP_ARN, MEMBERSHIP_ID, Q1, Q2, SEG_ARN, SESSION, env,  # noqa: F401
                                        get_params, query, start_params, success)

NOW = dt.datetime.now(dt.timezone.utc)


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "StartProtectedQuery")


@pytest.mark.parametrize("exc, kind, retryable", [
    (client_error("ThrottlingException", 429), reconcile.REFUSED, True),
    (client_error("ServiceQuotaExceededException", 402), reconcile.REFUSED, True),
    (client_error("ValidationException", 400), reconcile.REFUSED, False),
    (client_error("AccessDeniedException", 403), reconcile.REFUSED, False),
    (client_error("503", 503), reconcile.UNAVAILABLE, True),
    (client_error("InternalServerException", 500), reconcile.AMBIGUOUS, False),
    (client_error("502", 502), reconcile.AMBIGUOUS, False),
    (client_error("504", 504), reconcile.AMBIGUOUS, False),
    (EndpointConnectionError(endpoint_url="http://x"), reconcile.NOT_SENT, True),
    (ConnectTimeoutError(endpoint_url="http://x"), reconcile.NOT_SENT, True),
    (ReadTimeoutError(endpoint_url="http://x"), reconcile.AMBIGUOUS, False),
    (ConnectionClosedError(endpoint_url="http://x"), reconcile.AMBIGUOUS, False),
    (NoCredentialsError(), reconcile.LOCAL, False),
])
def test_a_failed_start_is_classified_by_what_it_may_have_done(exc, kind, retryable):
    verdict = reconcile.classify(exc)
    assert (verdict.kind, verdict.retryable) == (kind, retryable)


def test_a_record_matches_a_start_on_template_parameters_result_location_and_compute():
    result = {"outputConfiguration": {"s3": {"resultFormat": "CSV", "bucket": BUCKET, "keyPrefix": "results/t"}}}
    expected = reconcile.Expected(SEG_ARN, {"min_orders": "1"}, result, {"worker": {"type": "CR.4X", "number": 8}})
    record = query(Q1, "STARTED", resultConfiguration={"outputConfiguration": {"s3": {
        "resultFormat": "CSV", "bucket": BUCKET, "keyPrefix": "results/t", "singleFileOutput": False}}},
        computeConfiguration={"worker": {"type": "CR.4X", "number": 8}})["protectedQuery"]
    assert reconcile.matches(reconcile.QUERY, record, expected)  # a key the service added does not matter
    assert not reconcile.matches(reconcile.QUERY, query(Q1, "STARTED", params={"min_orders": "2"})["protectedQuery"],
                                 expected)
    other_prefix = {**record, "resultConfiguration": json.loads(
        json.dumps(record["resultConfiguration"]).replace("results/t", "results/u"))}
    assert not reconcile.matches(reconcile.QUERY, other_prefix, expected)
    other_compute = {**record, "computeConfiguration": {"worker": {"type": "CR.1X", "number": 8}}}
    assert not reconcile.matches(reconcile.QUERY, other_compute, expected)
    # a record that reports no result configuration cannot be told apart on it
    bare = {k: v for k, v in record.items() if k not in ("resultConfiguration", "computeConfiguration")}
    assert reconcile.matches(reconcile.QUERY, bare, expected)


def summary(qid: str, created: dt.datetime, status: str = "STARTED") -> dict:
    return {"id": qid, "membershipId": MEMBERSHIP_ID, "membershipArn": MEMBERSHIP_ARN, "createTime": created,
            "status": status, "receiverConfigurations": [{"analysisType": "DIRECT_ANALYSIS"}]}


def test_the_search_reads_only_records_in_the_window_and_stops_at_older_pages():
    client = SESSION.client("cleanrooms")
    old = NOW - dt.timedelta(hours=1)
    known = "c3d4e5f6-a7b8-4c9d-8e0f-1a2b3c4d5e6f"
    with Stubber(client) as stub:
        # Newest first: one of ours already known (never a candidate), the lost one, then one an hour old: the next
        # page is never asked for.
        stub.add_response("list_protected_queries", {"protectedQueries": [
            summary(known, NOW), summary(Q1, NOW - dt.timedelta(seconds=2)), summary(Q2, old)], "nextToken": "p2"},
            {"membershipIdentifier": MEMBERSHIP_ID, "maxResults": 100})
        stub.add_response("get_protected_query", query(Q1, "STARTED"), get_params(Q1))
        finder = reconcile.Reconciler(client, MEMBERSHIP_ID, reconcile.QUERY, wall=lambda: NOW, known=lambda: {known})
        finding = finder.find(reconcile.Expected(SEG_ARN, {"min_orders": "1"}), NOW - dt.timedelta(seconds=3), NOW)
        stub.assert_no_pending_responses()
    assert finding.record["id"] == Q1 and finding.candidates == [Q1] and finding.checked == 1


def test_the_window_follows_the_service_clock_from_the_date_header():
    finder = reconcile.Reconciler(None, MEMBERSHIP_ID, reconcile.QUERY, wall=lambda: NOW, margin=30)
    ahead = NOW + dt.timedelta(minutes=10)  # the service's clock is 10 minutes ahead of ours
    page = {"ResponseMetadata": {"HTTPHeaders": {"date": ahead.strftime("%a, %d %b %Y %H:%M:%S GMT")}}}
    low, high = finder._window(page, NOW - dt.timedelta(seconds=5), NOW)
    assert abs((low - (ahead - dt.timedelta(seconds=35))).total_seconds()) < 1.5
    assert abs((high - (ahead + dt.timedelta(seconds=30))).total_seconds()) < 1.5
    low, high = finder._window({}, NOW, None)  # no Date header: the wide margin, and no upper bound
    assert low == NOW - dt.timedelta(minutes=5) and high is None


# -- through the runner, with Stubber ---------------------------------------------------------------------------------
def test_a_500_on_start_is_looked_for_not_sent_again(env):
    key = f"results/customer_segments/{Q1}/result.csv"
    env.s3.put_object(Bucket=BUCKET, Key=key, Body=b"a,b\n1,2\n")
    env.stub.add_client_error("start_protected_query", "InternalServerException", "Internal failure", 500,
                              expected_params=start_params())
    env.stub.add_response("list_protected_queries", {"protectedQueries": [summary(Q1, NOW)]},
                          {"membershipIdentifier": MEMBERSHIP_ID, "maxResults": 100})
    env.stub.add_response("get_protected_query", query(Q1, "STARTED", resultConfiguration=start_params()[
        "resultConfiguration"]), get_params(Q1))  # the search reads it
    env.stub.add_response("get_protected_query", success(Q1, f"s3://{BUCKET}/{key}"), get_params(Q1))  # a poll

    code = env.run("run", "customer_segments")

    assert code == 0, env.err  # and no second start_protected_query was queued: Stubber would have refused it
    assert "start_protected_query: HTTP 500 InternalServerException" in env.err
    assert f"(1 attempt; query {Q1} found after its start's answer was lost (HTTP 500 InternalServerException))" \
        in env.err


def test_a_full_quota_is_refused_before_work_so_the_start_is_sent_again(env):
    key = f"results/customer_segments/{Q1}/result.csv"
    env.s3.put_object(Bucket=BUCKET, Key=key, Body=b"a,b\n1,2\n")
    env.stub.add_client_error("start_protected_query", "ServiceQuotaExceededException", "Too many ongoing queries",
                              402, expected_params=start_params())
    env.stub.add_response("start_protected_query", query(Q1, "SUBMITTED"), start_params())
    env.stub.add_response("get_protected_query", success(Q1, f"s3://{BUCKET}/{key}"), get_params(Q1))

    assert env.run("run", "customer_segments") == 0, env.err
    assert ("start_protected_query: HTTP 402 ServiceQuotaExceededException: Too many ongoing queries; nothing was "
            "started; sending it again in") in env.err
    assert "(1 attempt; the service received 2 start requests, sent again after: ServiceQuotaExceededException)" \
        in env.err


# -- the client's configuration ---------------------------------------------------------------------------------------
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_reads_are_retried_by_botocore_and_starts_never(monkeypatch, tmp_path):
    """Against a port nobody listens on (refused at once): a poll is tried 6 times, a start once. This is what
    changed from `max_attempts: 5`, which retried starts too (6 attempts of a start that may have gone through)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLEANROOMS", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("QUERYRUNNER_CONNECT_TIMEOUT", "0.5")
    monkeypatch.setenv("QUERYRUNNER_READ_TIMEOUT", "7")
    network = cloud.network_settings()
    client = cloud.default_client_factory(None, network, session=SESSION)("cleanrooms", "us-east-1")
    assert client.meta.config.connect_timeout == 0.5 and client.meta.config.read_timeout == 7
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 6}
    reconcile.guard_starts(client)  # what App.client does with every cleanrooms client
    sent: list[str] = []
    client.meta.events.register("before-send.cleanrooms", lambda request, **kw: sent.append(request.method))
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda self, context: 0)
    with pytest.raises(EndpointConnectionError):
        client.get_protected_query(membershipIdentifier=MEMBERSHIP_ID, protectedQueryIdentifier=Q1)
    assert len(sent) == 6
    sent.clear()
    with pytest.raises(EndpointConnectionError):
        client.start_protected_query(**start_params())
    assert len(sent) == 1


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_timeouts_from_the_environment_are_checked(monkeypatch, value):
    monkeypatch.setenv("QUERYRUNNER_CONNECT_TIMEOUT", value)
    with pytest.raises(cloud.checks.CheckError, match="QUERYRUNNER_CONNECT_TIMEOUT must be a finite number"):
        cloud.network_settings()


# -- the journal ------------------------------------------------------------------------------------------------
def planned() -> dict[str, jr.Planned]:
    return {"a": jr.Planned(SEG_ARN, {"x": "1"}, {"outputConfiguration": {}}, None),
            "b": jr.Planned(SEG_ARN.replace("0c1d", "0c1e"), {}, None, None)}


def test_the_journal_round_trips_and_says_what_changed(tmp_path):
    path = jr.Journal.path_for(tmp_path, MEMBERSHIP_ID, "all")
    journal = jr.Journal(path, MEMBERSHIP_ID, "all", {n: jr.Entry(n, p) for n, p in planned().items()})
    journal.intent("a", NOW)
    journal.started("a", Q1, "reconciled", 1)
    journal.started("a", Q1, "re-attached", 0)
    again = jr.Journal.load(path)
    entry = again.entries["a"]
    assert (entry.state, entry.query_id, entry.queries[0]["how"], entry.intent_at) == (
        jr.RUNNING, Q1, "reconciled, re-attached", NOW.replace(microsecond=NOW.microsecond // 1000 * 1000))
    assert again.known_ids() == {Q1}
    assert again.difference(MEMBERSHIP_ID, "all", planned()) is None
    changed = {**planned(), "a": jr.Planned(SEG_ARN, {"x": "2"}, {"outputConfiguration": {}}, None)}
    assert again.difference(MEMBERSHIP_ID, "all", changed) == \
        'its a was started with parameters {"x": "1"}; this run has {"x": "2"}'
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_a_journal_stays_open_while_a_query_may_be_running(tmp_path):
    path = jr.Journal.path_for(tmp_path, MEMBERSHIP_ID, "all")
    journal = jr.Journal(path, MEMBERSHIP_ID, "all", {n: jr.Entry(n, p) for n, p in planned().items()})
    journal.started("a", Q1, "started", 1)
    journal.close()
    assert journal.status == "open"  # a is running: a plain re-run resumes
    journal.ended("a", jr.SUCCEEDED)
    journal.close()
    assert journal.status == "open"  # its result is not on disk yet
    journal.saved_results("a", ["results/a/q.csv"])
    journal.close()
    assert jr.Journal.load(path).status == "finished"


def test_a_second_run_of_one_journal_is_refused(tmp_path):
    path = jr.Journal.path_for(tmp_path, MEMBERSHIP_ID, "all")
    with jr.locked(path):
        with pytest.raises(jr.JournalError, match="another run .*is using journal"):
            with jr.locked(path):
                pass
