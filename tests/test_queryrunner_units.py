"""Pure helpers: parameter types, backoff, S3 URIs, aggregation counting, tables, outputs."""
from __future__ import annotations

import io
import pathlib
import random

import pytest

from queryrunner import params
from queryrunner.budget import count_aggregations
from queryrunner.outputs import OutputsError, Parameter, Settings, load_outputs
from queryrunner.poll import Backoff, ElapsedPoll, is_retryable, result_location, result_members
from queryrunner.results import ResultData, ResultsError, format_table, parse_s3_uri, save

DATA = pathlib.Path(__file__).resolve().parent.parent / "data" / "queries"


@pytest.mark.parametrize("ptype, good, bad", [
    ("INTEGER", ["1", "-7", " 42 "], ["1.5", "x", "", "2147483648"]),
    ("SMALLINT", ["32767"], ["32768"]),
    ("BIGINT", ["9223372036854775807"], ["9223372036854775808"]),
    ("DECIMAL", ["1.25", "-3", "1e3"], ["abc", "NaN", "Infinity"]),
    ("DOUBLE_PRECISION", ["0.5"], ["half"]),
    ("REAL", ["2"], ["two"]),
    ("BOOLEAN", ["true", "FALSE"], ["yes", "1"]),
    ("DATE", ["2024-02-29"], ["2023-02-29", "29/02/2024", "2024-02-29 10:00:00"]),
    ("TIMESTAMP", ["2024-02-29 10:00:00", "2024-02-29T10:00:00.123456"], ["2024-02-29", "noon"]),
    ("VARCHAR", ["anything", ""], ["x" * 1001]),
    ("CHAR", ["a"], []),
])
def test_check_value(ptype, good, bad):
    for value in good:
        assert params.check_value(ptype, value) is None, value
    for value in bad:
        assert params.check_value(ptype, value) is not None, value


def test_resolve_applies_defaults_normalises_booleans_and_collects_every_problem():
    declared = [Parameter("min_orders", "INTEGER", "1"), Parameter("active", "BOOLEAN", None),
                Parameter("since", "DATE", None)]
    assert params.resolve("t", declared, {"active": "TRUE", "since": "2024-01-01"}) == {
        "min_orders": "1", "active": "true", "since": "2024-01-01"}
    with pytest.raises(params.ParamError) as exc:
        params.resolve("t", declared, {"min_orders": "x", "nope": "1"})
    assert len(exc.value.problems) == 4  # unknown, wrong type, two missing


def test_backoff_grows_with_jitter_and_is_capped():
    delays = Backoff(initial=1, factor=2, cap=30, rng=random.Random(0)).delays()
    values = [next(delays) for _ in range(12)]
    for i, value in enumerate(values):
        ceiling = min(30, 2 ** i)
        assert ceiling / 2 <= value <= ceiling
    assert len(set(values)) == len(values)  # jittered


def test_elapsed_poll_waits_a_tenth_of_the_running_time_between_1_and_30_seconds():
    policy = ElapsedPoll(rng=random.Random(0))
    assert [policy.bound(t) for t in (0, 5, 10, 25, 120, 300, 7200)] == [1, 1, 1, 2.5, 12, 30, 30]
    for elapsed in (0, 3, 17, 250, 9000):
        bound = policy.bound(elapsed)
        delays = [policy.delay(elapsed) for _ in range(50)]
        assert all(bound / 2 <= d <= bound for d in delays)  # jittered, never zero
        assert len(set(delays)) == len(delays)
    custom = ElapsedPoll(fraction=0.05, floor=0.5, cap=10)
    assert (custom.bound(1), custom.bound(100), custom.bound(1000)) == (0.5, 5, 10)
    with pytest.raises(ValueError):
        ElapsedPoll(fraction=0)
    with pytest.raises(ValueError):
        ElapsedPoll(floor=5, cap=1)


def test_backoff_as_a_poll_policy_ignores_the_elapsed_time():
    a, b = Backoff(rng=random.Random(4)), Backoff(rng=random.Random(4))
    assert [a.delay(elapsed) for elapsed in (0, 999, 0, 5)] == [next(d) for d in [b.delays()] for _ in range(4)]


def test_result_location_and_receivers_from_either_output_shape():
    plain = {"result": {"output": {"s3": {"location": "s3://b/k/"}}}}
    dist = {"result": {"output": {"distribute": {"s3": {"location": "s3://b/d/"},
                                                 "memberList": [{"accountId": "222233334444"}]}}}}
    assert (result_location(plain), result_members(plain)) == ("s3://b/k/", [])
    assert (result_location(dist), result_members(dist)) == ("s3://b/d/", ["222233334444"])
    assert result_location({"status": "STARTED"}) is None


def test_retryable_prefers_the_service_flag():
    assert is_retryable({"code": "INTERNAL_ERROR", "message": "m", "retry": {"retryable": True}})
    assert not is_retryable({"code": "TRANSIENT_ERROR", "message": "m", "retry": {"retryable": False}})
    assert is_retryable({"code": "TRANSIENT_ERROR", "message": "m"})
    assert not is_retryable({"code": "MALFORMED_QUERY", "message": "m"})
    assert not is_retryable(None)


def test_parse_s3_uri():
    assert parse_s3_uri("s3://bucket/results/x/") == ("bucket", "results/x/")
    with pytest.raises(ResultsError):
        parse_s3_uri("https://bucket.s3.amazonaws.com/x")


def test_count_aggregations_on_the_project_templates():
    seg = count_aggregations((DATA / "customer_segments.sql").read_text())
    assert seg == {"COUNT": 1, "AVG": 2}
    reach = count_aggregations((DATA / "channel_reach.sql").read_text())
    assert reach == {"COUNT": 1, "SUM": 1}
    assert count_aggregations("select count(*), stddev_samp(x), 'sum(' from t -- avg(y)") == {"COUNT": 1,
                                                                                             "STDDEV": 1}


def test_format_table_aligns_and_truncates():
    text = format_table(["name", "n"], [["a", "5"], ["bbb", "10"], ["c", "7"]], max_rows=2)
    lines = text.splitlines()
    assert lines[0] == "name |  n"
    assert lines[2] == "a    |  5" and lines[3] == "bbb  | 10"
    assert "... 1 more rows" in text and "(3 rows)" in text


def test_parquet_parts_are_saved_as_downloaded(tmp_path):
    data = ResultData(fmt="PARQUET", files=[("k/part-0.parquet", b"PAR1a"), ("k/part-1.parquet", b"PAR1b")])
    paths = save(data, str(tmp_path), "seg", "q1")
    assert [pathlib.Path(p).read_bytes() for p in paths] == [b"PAR1a", b"PAR1b"]


def test_outputs_errors():
    with pytest.raises(OutputsError, match="no stack outputs on standard input"):
        load_outputs("-", io.StringIO(""))
    with pytest.raises(OutputsError, match="cannot read stack outputs from /nonexistent"):
        load_outputs("/nonexistent/analyst.json", io.StringIO())
    with pytest.raises(OutputsError, match="result_format must be CSV or PARQUET"):
        _ = Settings({"result_format": "JSON"}).result_format
    with pytest.raises(OutputsError, match=r"analysis_templates.seg' is malformed"):
        Settings({"analysis_templates": {"seg": {"id": "x"}}}).templates()
    with pytest.raises(OutputsError, match=r"\(or --membership-id\)"):
        _ = Settings({}).membership_id
    assert Settings({"membership_id": "a"}, {"membership_id": "b"}).membership_id == "b"


def test_parquet_results_are_printed_as_a_table():
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from queryrunner.results import _decode_parquet

    buffer = io.BytesIO()
    pq.write_table(pa.table({"age_group": ["25-34", "35-44"], "customer_count": [118, 97]}), buffer)
    data = ResultData(fmt="PARQUET", files=[("k/part-0.parquet", buffer.getvalue())])
    _decode_parquet(data)
    assert data.header == ["age_group", "customer_count"]
    assert data.rows == [["25-34", "118"], ["35-44", "97"]]
