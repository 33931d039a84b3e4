"""Spark compute per run and per template: flags, then the template's output, then the stack's default.

Every request and response goes through botocore's Stubber (the real cleanrooms model); S3 is moto.
"""
from __future__ import annotations

import copy
import gzip
import json
import pathlib

import botocore
import pytest

from queryrunner import checks
from queryrunner.outputs import Compute, describe_compute
from tests.test_queryrunner_run import (BUCKET, CSV_PART_1, OUTPUTS, Q1, Q2, REACH_ARN, env, get_params,  # noqa: F401
                                        query, start_params, success)

CR4X_32 = {"worker": {"type": "CR.4X", "number": 32}}


def with_compute(params: dict, compute: dict | None) -> dict:
    params = copy.deepcopy(params)
    if compute is not None:
        params["computeConfiguration"] = compute
    return params


def queue_run(env, compute: dict | None, qid: str = Q1, template: str = "customer_segments", arn=None,
              params=None, billed: float | None = None):
    """One template run from start to a downloadable result, expecting `compute` to be sent."""
    key = f"results/{template}/{qid}/result.csv"
    env.s3.put_object(Bucket=BUCKET, Key=key, Body=CSV_PART_1.encode())
    kwargs = {} if arn is None else {"arn": arn}
    echoed = {"computeConfiguration": compute} if compute else {}
    start = start_params(template=template, params=params, **kwargs)
    env.stub.add_response("start_protected_query", query(qid, "SUBMITTED", params=params, **kwargs, **echoed),
                          with_compute(start, compute))
    done = success(qid, f"s3://{BUCKET}/{key}", params=params, **kwargs, **echoed)
    if billed is not None:
        done["protectedQuery"]["statistics"]["billedResourceUtilization"] = {"units": billed}
    env.stub.add_response("get_protected_query", done, get_params(qid))


def test_flags_choose_the_worker_type_and_count(env):
    queue_run(env, CR4X_32, billed=3.2)

    code = env.run("run", "customer_segments", "--worker-type", "CR.4X", "--workers", "32")

    assert code == 0, env.err
    assert f"started query {Q1}: SUBMITTED; compute CR.4X x 32 workers = 256 CRPU" in env.err
    assert "SUCCESS after" in env.err and "on CR.4X x 32 workers = 256 CRPU; billed 3.2 CRPU-hours" in env.err


@pytest.mark.parametrize("stack, template, argv, sent", [
    # the stack's default alone
    ({"workerType": "CR.1X", "workers": 16}, None, [], {"worker": {"type": "CR.1X", "number": 16}}),
    # the template's own setting wins, key by key; what it leaves open comes from the stack
    ({"workerType": "CR.1X", "workers": 16}, {"workerType": "CR.4X"}, [], {"worker": {"type": "CR.4X", "number": 16}}),
    ({"workerType": "CR.1X", "workers": 16}, {"workers": 64}, [], {"worker": {"type": "CR.1X", "number": 64}}),
    # flags win over both
    ({"workerType": "CR.1X", "workers": 16}, {"workerType": "CR.4X", "workers": 64}, ["--workers", "8"],
     {"worker": {"type": "CR.4X", "number": 8}}),
    ({"workerType": "CR.1X", "workers": 16}, {"workerType": "CR.4X"}, ["--worker-type", "CR.8X"],
     {"worker": {"type": "CR.8X", "number": 16}}),
    # no stack default (absent or null): only what the template or the flags say, or nothing at all
    (None, {"workers": 400}, [], {"worker": {"number": 400}}),
    (None, None, ["--worker-type", "CR.4X"], {"worker": {"type": "CR.4X"}}),
    (None, {}, [], None),
    ("absent", None, [], None),
])
def test_most_specific_setting_wins(env, stack, template, argv, sent):
    outputs = copy.deepcopy(OUTPUTS)
    if stack != "absent":
        outputs["compute"] = stack
    if template is not None:
        outputs["analysis_templates"]["customer_segments"]["compute"] = template
    queue_run(env, sent)

    assert env.run("run", "customer_segments", *argv, outputs=outputs) == 0, env.err
    assert f"compute {describe_compute(sent)}" in env.err


def test_run_all_applies_the_flags_to_every_template_and_sums_up_billing(env):
    outputs = copy.deepcopy(OUTPUTS)
    del outputs["analysis_templates"]["dp_segments"]
    outputs["compute"] = {"workerType": "CR.1X", "workers": 16}
    outputs["analysis_templates"]["channel_reach"]["compute"] = {"workerType": "CR.8X", "workers": 4}
    reach_params = {"min_sessions": "2", "since": "2024-01-01"}
    queue_run(env, {"worker": {"type": "CR.4X", "number": 16}}, billed=0.75)
    queue_run(env, {"worker": {"type": "CR.4X", "number": 4}}, qid=Q2, template="channel_reach", arn=REACH_ARN,
              params=reach_params)

    code = env.run("run", "--all", "--max-concurrency", "1", "--worker-type", "CR.4X", "--param", "min_sessions=2",
                   outputs=outputs)

    assert code == 0, env.err
    summary = env.out.split("== summary ==")[1].strip().splitlines()
    header = [c.strip() for c in summary[0].split(" | ")]
    # "start requests" (what the service received) and "how" (started, reconciled after a lost answer,
    # re-attached by --resume) were added with the run journal; the compute columns keep their places.
    assert header == ["template", "status", "query id", "seconds", "attempts", "compute", "CRPU-hours",
                      "start requests", "how", "result / error"]
    rows = {r[0]: r for r in ([c.strip() for c in line.split(" | ")] for line in summary[2:4])}
    assert rows["customer_segments"][5:7] == ["CR.4X x 16", "0.75"]
    assert rows["channel_reach"][5:7] == ["CR.4X x 4", "-"]  # no billing reported: shown as such


def test_without_billing_the_summary_has_no_crpu_column(env):
    outputs = copy.deepcopy(OUTPUTS)
    outputs["analysis_templates"] = {"customer_segments": outputs["analysis_templates"]["customer_segments"]}
    queue_run(env, None)
    assert env.run("run", "--all", outputs=outputs) == 0, env.err
    header = env.out.split("== summary ==")[1].strip().splitlines()[0]
    assert "CRPU-hours" not in header and "| compute |" in header
    assert "| default |" in env.out


def test_describe_compute():
    assert describe_compute(None) == "service default (none sent; CR.1X per the User Guide)"
    assert describe_compute({"worker": {"type": "CR.1X", "number": 16}}) == "CR.1X x 16 workers = 32 CRPU"
    assert describe_compute({"worker": {"type": "CR.8X", "number": 4}}) == "CR.8X x 4 workers"  # no CRPU figure
    assert describe_compute({"worker": {"type": "CR.4X"}}, short=True) == "CR.4X x default"
    assert Compute("CR.4X").over(Compute("CR.1X", 16)).over(None) == Compute("CR.4X", 16)
    assert Compute().configuration() is None


def test_worker_types_and_counts_agree_with_the_installed_botocore_model():
    path = pathlib.Path(botocore.__file__).parent / "data" / "cleanrooms" / checks.CLEANROOMS_API_VERSION
    shapes = json.loads(gzip.decompress((path / "service-2.json.gz").read_bytes()))["shapes"]
    assert tuple(shapes["WorkerComputeType"]["enum"]) == checks.WORKER_TYPES
    number = shapes["WorkerComputeConfigurationNumberInteger"]
    lo, hi = checks.SQL_WORKERS
    assert number["min"] == lo and hi <= number["max"]
    assert f"maximum value of {hi}" in shapes["WorkerComputeConfiguration"]["members"]["number"]["documentation"]
