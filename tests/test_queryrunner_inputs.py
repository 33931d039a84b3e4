"""Strict inputs: every bad input the runner can recognise is refused locally.

Each case of BAD_INPUTS must end with exit 2 and one line on stderr that starts
with "error:" and names the flag or stack output (a --param problem may use the
multi-line "error: bad parameters..." format), with no traceback, no escape
codes, and no AWS client ever created, let alone a request sent.
"""
from __future__ import annotations

import copy
import gzip
import io
import json
import pathlib

import botocore
import botocore.endpoint
import botocore.session
import pytest

from queryrunner import checks
from queryrunner.cli import main

ROOT = pathlib.Path(__file__).resolve().parent.parent
A_FILE = str(ROOT / "README.md")  # exists and is a file, wherever the suite runs from
A_FOLDER = str(ROOT / "data")

REGION = "us-east-1"
ACCOUNT = "111122223333"
MEMBERSHIP_ID = "5f0e2c1a-8b7d-4c3e-9a10-2b3c4d5e6f70"
COLLABORATION_ID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
SEG_ID = "0c1d2e3f-4a5b-4c6d-8e7f-901234567890"
SEG_ARN = f"arn:aws:cleanrooms:{REGION}:{ACCOUNT}:membership/{MEMBERSHIP_ID}/analysistemplate/{SEG_ID}"
QUERY_ID = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
QUICKSIGHT = {"dataset_id": "cleanrooms-customer-segments", "aws_account_id": ACCOUNT, "dashboard_id": "d-1",
              "template": "customer_segments", "published_prefix": "published/customer_segments"}

GOOD = {
    "region": REGION, "membership_id": MEMBERSHIP_ID, "collaboration_id": COLLABORATION_ID,
    "results_bucket": "analyst-results-111122223333", "results_prefix": "results", "result_format": "CSV",
    "analysis_templates": {
        "customer_segments": {"arn": SEG_ARN, "id": SEG_ID, "differential_privacy": False,
                              "parameters": [{"name": "min_orders", "type": "INTEGER", "default": "1"}]},
    },
    "quicksight": None,
}
RUN = ["run", "customer_segments", "--outputs", "-"]


def outputs(**changes) -> str:
    """The good outputs with some keys replaced, as `pulumi stack output --json` would print them."""
    return json.dumps({**GOOD, **changes})


def edited(good: dict, group: str, name: str, changes: dict) -> str:
    """``good`` with fields of ``good[group][name]`` replaced (None deletes), as JSON."""
    data = copy.deepcopy(good)
    spec = data[group][name]
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return json.dumps(data)


def template(**changes) -> str:
    """The good outputs with fields of the customer_segments template replaced (None deletes)."""
    return edited(GOOD, "analysis_templates", "customer_segments", changes)


def param(**changes) -> str:
    p = {"name": "min_orders", "type": "INTEGER", "default": "1", **changes}
    return template(parameters=[p])


G = json.dumps(GOOD)

# PySpark jobs: the outputs `job` reads (job_templates, pending_jobs, runs_jobs, artifact_bucket).
JOB_ID = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"
JOB_ARN = f"arn:aws:cleanrooms:{REGION}:{ACCOUNT}:membership/{MEMBERSHIP_ID}/analysistemplate/{JOB_ID}"
JOB = {"arn": JOB_ARN, "id": JOB_ID, "sha256": "ab" * 32, "tables": ["retail_purchases"],
       "parameters": [{"name": "min_orders", "type": "INT", "default": "1"}],
       "compute": {"workerType": "CR.1X", "workers": 4}}
JOBS_GOOD = {**GOOD, "runs_jobs": True, "artifact_bucket": "org-a-cleanrooms-artifacts-111122223333",
             "job_templates": {"retail_order_mix": JOB}, "pending_jobs": {"media_mix": ["media_engagement"]}}
JOB_RUN = ["job", "retail_order_mix", "--outputs", "-"]
J = json.dumps(JOBS_GOOD)


def job_outputs(**changes) -> str:
    """The good job outputs with some keys replaced."""
    return json.dumps({**JOBS_GOOD, **changes})


def job(**changes) -> str:
    """The good job outputs with fields of job_templates.retail_order_mix replaced (None deletes)."""
    return edited(JOBS_GOOD, "job_templates", "retail_order_mix", changes)


# (argv, standard input (the stack outputs for --outputs -) or None, what the one error line must contain)
BAD_INPUTS: list[tuple[list[str], str | None, str]] = [
    # region: flag and output
    ([*RUN, "--region", "useast1"], G, "--region"),
    ([*RUN, "--region", "US-EAST-1"], G, "--region"),
    ([*RUN, "--region", "us-east"], G, "--region"),
    ([*RUN, "--region", ""], G, "--region"),
    (["budget", "--outputs", "-", "--region", "us-east-1 "], G, "--region"),
    (RUN, outputs(region=1), "stack output 'region'"),
    (RUN, outputs(region="us_east_1"), "stack output 'region'"),
    (["history", "--outputs", "-"], outputs(region=["us-east-1"]), "stack output 'region'"),
    (RUN, outputs(region="eu-west-1"), "analysis_templates.customer_segments.arn"),
    ([*RUN, "--region", "eu-west-2"], G, "--region"),
    # --region is the collaboration's region, whatever the command: elsewhere nothing of the membership exists.
    (["budget", "--outputs", "-", "--region", "eu-west-1"], G, "--region eu-west-1: this stack's membership and "
     "collaboration are in us-east-1 (stack output 'region'), and Clean Rooms finds them only there; pass --region "
     "us-east-1"),
    (["budget", "--region", "sa-east-1", "--membership-id", MEMBERSHIP_ID, "--collaboration-id", COLLABORATION_ID],
     None, "--region sa-east-1 has no AWS Clean Rooms endpoint; it must be one of ap-northeast-1, "),
    (["history", "--outputs", "-", "--region", "eu-west-1"],
     json.dumps({**{k: v for k, v in GOOD.items() if k != "region"},
                 "membership_arn": f"arn:aws:cleanrooms:{REGION}:{ACCOUNT}:membership/{MEMBERSHIP_ID}"}),
     "(stack output 'membership_arn')"),
    (["status", "--outputs", "-", QUERY_ID, "--region", "eu-west-1"],
     json.dumps({**{k: v for k, v in GOOD.items() if k != "region"}, "allowed_result_regions": ["us-east-1"]}),
     "--region eu-west-1 cannot be the collaboration's region: that is always one of its allowed result regions "
     "['us-east-1']"),
    # ids: flags, QUERY_ID and outputs, against the botocore cleanrooms model's patterns
    ([*RUN, "--membership-id", "abc"], G, "--membership-id"),
    ([*RUN, "--membership-id", MEMBERSHIP_ID.upper()], G, "--membership-id"),
    ([*RUN, "--membership-id", ""], G, "--membership-id"),
    (["budget", "--outputs", "-", "--membership-id", MEMBERSHIP_ID + "\n"], G, "--membership-id"),
    ([*RUN, "--collaboration-id", "collab-1"], G, "--collaboration-id"),
    (["history", "--outputs", "-", "--collaboration-id", "\x1b[31m" + COLLABORATION_ID[5:]], G,
     "--collaboration-id"),
    (["status", "--outputs", "-", "not-a-query-id"], G, "QUERY_ID"),
    (["status", "--outputs", "-", QUERY_ID.upper()], G, "QUERY_ID"),
    (["status", "--outputs", "-", QUERY_ID + "0"], G, "QUERY_ID"),
    (RUN, outputs(membership_id=5), "stack output 'membership_id'"),
    (RUN, outputs(membership_id=[MEMBERSHIP_ID]), "stack output 'membership_id'"),
    (["history", "--outputs", "-"], outputs(membership_id="m-1"), "stack output 'membership_id'"),
    (["budget", "--outputs", "-"], outputs(collaboration_id={"id": COLLABORATION_ID}),
     "stack output 'collaboration_id'"),
    (RUN, outputs(collaboration_id="arn:aws:cleanrooms:us-east-1:111122223333:collaboration/x"),
     "stack output 'collaboration_id'"),
    (RUN, outputs(collaboration_id=MEMBERSHIP_ID), "membership_id equals collaboration_id"),
    # analysis templates
    (RUN, outputs(analysis_templates=[]), "stack output 'analysis_templates'"),
    (RUN, outputs(analysis_templates="customer_segments"), "stack output 'analysis_templates'"),
    (RUN, outputs(analysis_templates={"customer_segments": [SEG_ARN]}), "analysis_templates.customer_segments'"),
    (["run", "--all", "--outputs", "-"],
     outputs(analysis_templates={"../etc": GOOD["analysis_templates"]["customer_segments"]}), "analysis_templates"),
    (RUN, template(arn=None), "analysis_templates.customer_segments' is malformed"),
    (RUN, template(arn=42), "analysis_templates.customer_segments.arn"),
    (RUN, template(arn="arn:aws:s3:::analyst-results"), "analysis_templates.customer_segments.arn"),
    (RUN, template(arn=SEG_ARN + " "), "analysis_templates.customer_segments.arn"),
    (RUN, template(id=7), "analysis_templates.customer_segments.id"),
    (RUN, template(differential_privacy="yes"), "analysis_templates.customer_segments.differential_privacy"),
    (RUN, template(parameters={"min_orders": "INTEGER"}), "analysis_templates.customer_segments.parameters'"),
    (RUN, template(parameters=["min_orders"]), "analysis_templates.customer_segments.parameters[0]"),
    (RUN, param(name=1), "parameters[0].name"),
    (RUN, param(name="min orders"), "parameters[0].name"),
    (RUN, param(type=None), "parameters[0].type"),
    (RUN, param(type=["INTEGER"]), "parameters[0].type"),
    (RUN, param(default=1), "parameters[0].default"),
    # QuickSight (used by run unless --no-refresh)
    (RUN, outputs(quicksight=[]), "stack output 'quicksight'"),
    (RUN, outputs(quicksight="cleanrooms-customer-segments"), "stack output 'quicksight'"),
    (RUN, outputs(quicksight={**QUICKSIGHT, "dataset_id": 5}), "quicksight.dataset_id"),
    (RUN, outputs(quicksight={**QUICKSIGHT, "aws_account_id": "1234"}), "quicksight.aws_account_id"),
    (RUN, outputs(quicksight={**QUICKSIGHT, "published_prefix": "../up"}), "quicksight.published_prefix"),
    # result format
    (RUN, outputs(result_format="JSON"), "result_format"),
    (RUN, outputs(result_format=1), "result_format"),
    ([*RUN, "--result-format", "csv"], G, "--result-format"),
    # results bucket and prefix
    ([*RUN, "--results-bucket", "Bad_Bucket"], G, "--results-bucket"),
    ([*RUN, "--results-bucket", "ab"], G, "--results-bucket"),
    ([*RUN, "--results-bucket", "192.168.1.10"], G, "--results-bucket"),
    ([*RUN, "--results-bucket", "my..bucket"], G, "--results-bucket"),
    ([*RUN, "--results-bucket=-bucket"], G, "--results-bucket"),
    ([*RUN, "--results-bucket", "s3://analyst-results"], G, "--results-bucket"),
    (RUN, outputs(results_bucket=["analyst-results"]), "stack output 'results_bucket'"),
    (RUN, outputs(results_bucket="b" * 64), "stack output 'results_bucket'"),
    ([*RUN, "--results-prefix", "a//b"], G, "--results-prefix"),
    # Residency: results only where the collaboration allows them (allowedResultRegions).
    (RUN, outputs(allowed_result_regions=["eu-central-1"]),
     "results would be written to s3://analyst-results-111122223333 in us-east-1 (stack output 'region'), outside "
     "the collaboration's allowed result regions ['eu-central-1']"),
    ([*RUN, "--results-region", "eu-west-1"], outputs(allowed_result_regions=["us-east-1"]),
     "in eu-west-1 (--results-region), outside"),
    (RUN, outputs(allowed_result_regions=["us-east-1"], results_region="us-west-2"), "in us-west-2 (stack output "
     "'results_region'), outside"),
    (RUN, outputs(allowed_result_regions="us-east-1"), "stack output 'allowed_result_regions' must be a non-empty "
     "list of AWS region codes, got a string"),
    ([*RUN, "--results-region", "Europe"], G, "--results-region"),
    # A bucket named by the flag is not the stack's: its region is not assumed, it is asked for.
    ([*RUN, "--results-bucket", "elsewhere-results"], outputs(allowed_result_regions=["us-east-1"]),
     "--results-bucket elsewhere-results: its region is unknown"),
    ([*JOB_RUN, "--results-bucket", "elsewhere-results"], job_outputs(allowed_result_regions=["us-east-1"]),
     "pass --results-region with the bucket's region"),
    ([*RUN, "--results-region", "eu-west-1"], outputs(results_region="us-east-1"),
     "--results-region eu-west-1: the results bucket s3://analyst-results-111122223333 is the stack's own, in "
     "us-east-1 (stack output 'results_region')"),
    (JOB_RUN, json.dumps({**JOBS_GOOD, "allowed_result_regions": ["eu-west-1"]}), "outside the collaboration's "
     "allowed result regions ['eu-west-1']"),
    ([*RUN, "--results-prefix", "team results"], G, "--results-prefix"),
    ([*RUN, "--results-prefix", "/"], G, "--results-prefix"),
    ([*RUN, "--results-prefix", "x/../y"], G, "--results-prefix"),
    (RUN, outputs(results_prefix=["results"]), "stack output 'results_prefix'"),
    (RUN, outputs(results_prefix="p" * 600), "results_prefix"),
    # profile: must be configured (read from the AWS config files, no network)
    ([*RUN, "--profile", "no-such-profile-xyz"], G, "--profile"),
    (["budget", "--outputs", "-", "--profile", ""], G, "--profile"),
    # ranges, each flag named in its own error
    ([*RUN, "--max-concurrency", "0"], G, "--max-concurrency"),
    ([*RUN, "--max-concurrency", "-3"], G, "--max-concurrency"),
    ([*RUN, "--timeout", "0"], G, "--timeout"),
    ([*RUN, "--timeout", "-5"], G, "--timeout"),
    ([*RUN, "--timeout", "nan"], G, "--timeout"),
    ([*RUN, "--timeout", "inf"], G, "--timeout"),
    ([*RUN, "--timeout", "1e999"], G, "--timeout"),
    ([*RUN, "--timeout", "soon"], G, "--timeout"),
    ([*RUN, "--retries", "-1"], G, "--retries"),
    ([*RUN, "--max-rows", "-1"], G, "--max-rows"),
    ([*RUN, "--max-rows", "1.5"], G, "--max-rows"),
    (["history", "--outputs", "-", "--limit", "0"], G, "--limit"),
    (["benchmark", "--queries", "0"], None, "--queries"),
    (["benchmark", "--max-concurrency", "0"], None, "--max-concurrency"),
    (["benchmark", "--min-duration", "0"], None, "--min-duration"),
    (["benchmark", "--min-duration", "nan"], None, "--min-duration"),
    (["benchmark", "--max-duration", "0.1"], None, "--max-duration"),
    (["benchmark", "--max-duration", "inf"], None, "--max-duration"),
    # --out
    ([*RUN, "--out", A_FILE], G, "--out"),
    ([*RUN, "--out", A_FILE + "/results"], G, "--out"),
    ([*RUN, "--out", ""], G, "--out"),
    # the outputs themselves
    (RUN, "not json", "--outputs:"),
    (RUN, "[1, 2]", "--outputs:"),
    (RUN, "", "--outputs:"),
    (RUN, "[" * 100_000, "--outputs:"),
    (["run", "customer_segments", "--outputs", A_FOLDER], None, "--outputs:"),
    (["run", "customer_segments", "--outputs", "/nonexistent/analyst.json"], None, "--outputs:"),
    (["run", "customer_segments"], None, "--membership-id"),  # no outputs at all: names the flags to use
    # parameters (the multi-problem format)
    ([*RUN, "--param", "min_orders=many"], G, "min_orders"),
    ([*RUN, "--param", "nope=1"], G, "nope"),
    ([*RUN, "--param", "min_orders"], G, "--param"),
    # Spark compute: flags (SQL queries: 2-400 workers) and the outputs compute / analysis_templates.<t>.compute
    ([*RUN, "--worker-type", "CR.2X"], G, "--worker-type"),
    ([*RUN, "--worker-type", "cr.4x"], G, "--worker-type"),
    ([*RUN, "--worker-type", ""], G, "--worker-type"),
    ([*RUN, "--workers", "1"], G, "--workers"),
    ([*RUN, "--workers", "401"], G, "--workers"),
    ([*RUN, "--workers", "x"], G, "--workers"),
    ([*RUN, "--workers", "16.5"], G, "--workers"),
    (["run", "--all", "--outputs", "-", "--workers", "1024"], G, "--workers"),
    (RUN, outputs(compute="CR.4X"), "stack output 'compute'"),
    (RUN, outputs(compute=[{"workerType": "CR.4X"}]), "stack output 'compute'"),
    (RUN, outputs(compute={"workerType": 4, "workers": 16}), "stack output 'compute.workerType'"),
    (RUN, outputs(compute={"workerType": "CR.2X", "workers": 16}), "stack output 'compute.workerType'"),
    (RUN, outputs(compute={"workerType": "CR.1X", "workers": "16"}), "stack output 'compute.workers'"),
    (RUN, outputs(compute={"workerType": "CR.1X", "workers": True}), "stack output 'compute.workers'"),
    (RUN, outputs(compute={"workerType": "CR.1X", "workers": 1}), "stack output 'compute.workers'"),
    (RUN, outputs(compute={"workers": 401}), "stack output 'compute.workers'"),
    (RUN, outputs(compute={"workers": 16.5}), "stack output 'compute.workers'"),
    (RUN, template(compute="CR.4X"), "analysis_templates.customer_segments.compute'"),
    (RUN, template(compute={"workerType": "CR.16X"}), "analysis_templates.customer_segments.compute.workerType"),
    (RUN, template(compute={"workers": 0}), "analysis_templates.customer_segments.compute.workers"),
    # result receivers: 12-digit account ids, never the runner's own account
    (RUN, outputs(result_receivers=[ACCOUNT]), "stack output 'result_receivers[0]'"),
    (RUN, outputs(account_id="999988887777", result_receivers=["222233334444", "999988887777"]),
     "stack output 'result_receivers[1]'"),
    (RUN, outputs(membership_arn=f"arn:aws:cleanrooms:{REGION}:999988887777:membership/{MEMBERSHIP_ID}",
                  result_receivers=["999988887777"]), "stack output 'result_receivers[0]'"),
    (RUN, outputs(result_receivers="222233334444"), "stack output 'result_receivers'"),
    (RUN, outputs(result_receivers={"org-b": "222233334444"}), "stack output 'result_receivers'"),
    (RUN, outputs(result_receivers=[222233334444]), "stack output 'result_receivers[0]'"),
    (RUN, outputs(result_receivers=["2222-3333-4444"]), "stack output 'result_receivers[0]'"),
    (RUN, outputs(result_receivers=["222233334444", "222233334444"]), "stack output 'result_receivers[1]'"),
    (RUN, outputs(result_receivers=["222233334444"], analytics_engine="CLEAN_ROOMS_SQL"),
     "stack output 'analytics_engine'"),
    # tables a template reads, and the access budgets' associations
    (RUN, template(tables="retail_purchases"), "analysis_templates.customer_segments.tables'"),
    (RUN, template(tables=["retail_purchases", 2]), "analysis_templates.customer_segments.tables[1]"),
    (RUN, template(tables=[""]), "analysis_templates.customer_segments.tables[0]"),
    (RUN, outputs(access_budgets=["media_engagement"]), "stack output 'access_budgets'"),
    (RUN, outputs(access_budgets={"media_engagement": 5}), "stack output 'access_budgets.media_engagement'"),
    (RUN, outputs(access_budgets={"media_engagement": SEG_ARN}), "stack output 'access_budgets.media_engagement'"),
    (["budget", "--outputs", "-"], outputs(access_budgets="media_engagement"), "stack output 'access_budgets'"),
    (["benchmark", "--time-scale", "0"], None, "--time-scale"),
    (["benchmark", "--time-scale", "2"], None, "--time-scale"),
    (["benchmark", "--time-scale", "nan"], None, "--time-scale"),
    (["benchmark", "--policy", "fixed"], None, "--policy"),
    # PySpark jobs: the job and its outputs
    (["job", "retail_order_mx", "--outputs", "-"], J, "stack output 'job_templates'"),
    (["job", "media_mix", "--outputs", "-"], J, "stack output 'pending_jobs'"),
    (JOB_RUN, job_outputs(job_templates=None), "missing stack output 'job_templates'"),
    (JOB_RUN, job_outputs(job_templates=[JOB]), "stack output 'job_templates'"),
    (JOB_RUN, job_outputs(job_templates={"retail_order_mix": JOB_ARN}), "job_templates.retail_order_mix'"),
    (JOB_RUN, job_outputs(job_templates={"retail_order_mix": JOB, "../x": JOB}), "stack output 'job_templates'"),
    (JOB_RUN, job_outputs(pending_jobs=["media_mix"]), "stack output 'pending_jobs'"),
    (JOB_RUN, job_outputs(pending_jobs={"media_mix": "media_engagement"}), "stack output 'pending_jobs.media_mix'"),
    (JOB_RUN, job_outputs(runs_jobs=False), "stack output 'runs_jobs'"),
    (JOB_RUN, job_outputs(runs_jobs="yes"), "stack output 'runs_jobs'"),
    (RUN, outputs(runs_jobs=1), "stack output 'runs_jobs'"),
    (RUN, outputs(artifact_bucket="Org_A_Artifacts"), "stack output 'artifact_bucket'"),
    (JOB_RUN, job_outputs(artifact_bucket=["org-a-artifacts"]), "stack output 'artifact_bucket'"),
    (JOB_RUN, job(arn=None), "job_templates.retail_order_mix' is malformed"),
    (JOB_RUN, job(arn="arn:aws:s3:::org-a-artifacts"), "job_templates.retail_order_mix.arn"),
    (JOB_RUN, job(arn=SEG_ARN), "job_templates.retail_order_mix.id"),  # the ARN names another template
    (JOB_RUN, job(arn=JOB_ARN.replace(REGION, "eu-west-1")), "job_templates.retail_order_mix.arn"),
    (JOB_RUN, job(id="retail-order-mix"), "job_templates.retail_order_mix.id"),
    (JOB_RUN, job(sha256=None), "job_templates.retail_order_mix' is malformed"),
    (JOB_RUN, job(sha256="ab" * 31), "job_templates.retail_order_mix.sha256"),
    (JOB_RUN, job(sha256="zz" * 32), "job_templates.retail_order_mix.sha256"),
    (JOB_RUN, job(sha256=1234), "job_templates.retail_order_mix.sha256"),
    (JOB_RUN, job(parameters=[{"name": "min orders", "type": "INT"}]), "job_templates.retail_order_mix.parameters[0]"),
    (JOB_RUN, job(parameters={"min_orders": "INT"}), "job_templates.retail_order_mix.parameters'"),
    (JOB_RUN, job(tables="retail_purchases"), "job_templates.retail_order_mix.tables'"),
    (JOB_RUN, job(compute="CR.1X"), "job_templates.retail_order_mix.compute'"),
    (JOB_RUN, job(compute={"workerType": "CR.8X", "workers": 4}), "job_templates.retail_order_mix.compute.workerType"),
    (JOB_RUN, job(compute={"workerType": "CR.1X", "workers": 2}), "job_templates.retail_order_mix.compute.workers"),
    (JOB_RUN, job(compute={"workerType": "CR.1X", "workers": 200}), "job_templates.retail_order_mix.compute.workers"),
    (JOB_RUN, job(compute={"workerType": "CR.1X", "workers": "4"}), "job_templates.retail_order_mix.compute.workers"),
    # PySpark jobs: flags (CR.1X or CR.4X, 4-128 workers, both or neither)
    ([*JOB_RUN, "--worker-type", "CR.8X"], J, "--worker-type"),
    ([*JOB_RUN, "--worker-type", "cr.1x"], J, "--worker-type"),
    ([*JOB_RUN, "--workers", "3"], J, "--workers"),
    ([*JOB_RUN, "--workers", "129"], J, "--workers"),
    ([*JOB_RUN, "--workers", "4.5"], J, "--workers"),
    ([*JOB_RUN, "--workers", "8"], job(compute=None), "--worker-type"),
    ([*JOB_RUN, "--worker-type", "CR.4X"], job(compute=None), "--workers"),
    ([*JOB_RUN, "--timeout", "0"], J, "--timeout"),
    ([*JOB_RUN, "--timeout", "nan"], J, "--timeout"),
    ([*JOB_RUN, "--retries", "-1"], J, "--retries"),
    ([*JOB_RUN, "--max-rows", "-1"], J, "--max-rows"),
    ([*JOB_RUN, "--out", A_FILE], J, "--out"),
    ([*JOB_RUN, "--param", "min_orders=many"], J, "min_orders"),
    ([*JOB_RUN, "--param", "max_orders=3"], J, "max_orders"),
    ([*JOB_RUN, "--region", "eu-west-2"], J, "--region"),
    ([*JOB_RUN, "--membership-id", COLLABORATION_ID], J, "membership_id equals collaboration_id"),
    (["job", "--outputs", "-"], J, "the following arguments are required: name"),
    (["job-status", "--outputs", "-", "job-1"], J, "JOB_ID"),
    (["job-status", "--outputs", "-", QUERY_ID.upper()], J, "JOB_ID"),
    (["history", "--outputs", "-", "--jobs", "--status", "TIMED_OUT"], J, "--status"),
    # escape codes and newlines in a value are shown escaped, on one line
    (["run", "customer_segments\x1b[2J", "--outputs", "-"], G, "customer_segments\\x1b[2J"),
    (["budget", "\x1b[31m\nsurprise"], None, "unrecognized arguments"),
]


class NoAws:
    """A client factory that fails the test the moment anything would reach AWS."""

    def __init__(self):
        self.calls: list[tuple[str, str]] = []

    def __call__(self, service: str, region: str):
        self.calls.append((service, region))
        raise AssertionError(f"a {service} client was requested in {region}: the input should have been refused")


@pytest.fixture(autouse=True)
def offline_aws(tmp_path, monkeypatch):
    """Known AWS profiles, and no way for botocore to build a client or send a request."""
    config = tmp_path / "aws-config"
    config.write_text("[default]\nregion = us-east-1\n[profile org-a]\nregion = us-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_PROFILE", raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError("botocore was asked to create a client or send a request")

    monkeypatch.setattr(botocore.session.Session, "create_client", refuse)
    monkeypatch.setattr(botocore.endpoint.Endpoint, "make_request", refuse)
    monkeypatch.chdir(tmp_path)


def invoke(argv: list[str], stdin: str | None, factory=None) -> tuple[int, str, str, NoAws]:
    factory = factory or NoAws()
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdin=io.StringIO(stdin or ""), stdout=out, stderr=err, client_factory=factory)
    return code, out.getvalue(), err.getvalue(), factory


def test_the_sweep_is_broad():
    assert len(BAD_INPUTS) >= 40
    assert len({(tuple(a), s) for a, s, _ in BAD_INPUTS}) == len(BAD_INPUTS), "duplicate cases"


@pytest.mark.parametrize("argv, stdin, expected", BAD_INPUTS,
                         ids=[f"{i:02d}-{e}"[:60] for i, (_, _, e) in enumerate(BAD_INPUTS)])
def test_bad_input_is_refused_locally(argv, stdin, expected):
    code, out, err, factory = invoke(argv, stdin)

    assert code == 2, err
    assert factory.calls == []
    assert "Traceback" not in err and "\x1b" not in err
    lines = err.splitlines()
    assert lines and lines[0].startswith("error:"), err
    if lines[0].startswith("error: bad parameters"):
        assert all(line.startswith("  - ") for line in lines[1:]) and len(lines) >= 2, err
    else:
        assert len(lines) == 1, err
    assert expected in err, err
    assert out == ""


@pytest.mark.parametrize("argv", [
    RUN, ["run", "--all", "--outputs", "-"], ["budget", "--outputs", "-"], ["history", "--outputs", "-"],
    ["status", "--outputs", "-", QUERY_ID], [*RUN, "--profile", "org-a"], [*RUN, "--region", "us-east-1"],
    [*RUN, "--results-bucket", "team.results-1", "--results-prefix", "/a/b=c/"],
    [*RUN, "--worker-type", "CR.8X", "--workers", "400"], [*RUN, "--workers", "2", "--no-distribute"],
])
def test_good_inputs_get_as_far_as_aws(argv):
    """The baseline of the sweep: with nothing wrong, the runner does ask for a client."""
    with pytest.raises(AssertionError, match="client was requested"):
        invoke(argv, G)


@pytest.mark.parametrize("argv, stdin, region", [
    # the stack's own bucket, by output or by the same name; another bucket with its region
    ([*RUN, "--results-bucket", GOOD["results_bucket"]], outputs(allowed_result_regions=["us-east-1"]), REGION),
    ([*RUN, "--results-bucket", "elsewhere-results", "--results-region", "eu-west-1"],
     outputs(allowed_result_regions=["us-east-1", "eu-west-1"]), REGION),
    ([*RUN, "--results-region", "us-east-1"], outputs(results_region="us-east-1"), REGION),
    # --region where the outputs do not say: bounded by the allowed result regions, or free without outputs
    (["budget", "--outputs", "-", "--region", "eu-west-1"],
     json.dumps({**{k: v for k, v in GOOD.items() if k != "region"}, "allowed_result_regions": ["eu-west-1"]}),
     "eu-west-1"),
    (["budget", "--region", "eu-west-1", "--membership-id", MEMBERSHIP_ID, "--collaboration-id", COLLABORATION_ID],
     None, "eu-west-1"),
])
def test_results_and_region_flags_that_fit_the_stack_get_as_far_as_aws(argv, stdin, region):
    factory = NoAws()
    with pytest.raises(AssertionError, match="client was requested"):
        invoke(argv, stdin, factory)
    assert factory.calls == [("cleanrooms", region)]


@pytest.mark.parametrize("changes", [
    {"region": "us-gov-west-1"}, {"region": "cn-north-1"}, {"region": "eu-central-1"},
    {"quicksight": QUICKSIGHT}, {"result_format": "parquet"}, {"collaboration_id": None},
    {"compute": {"workerType": "CR.1X", "workers": 16}}, {"compute": None}, {"compute": {"workers": 16.0}},
    {"result_receivers": ["222233334444", "555566667777"]}, {"result_receivers": []}, {"result_receivers": None},
    {"allowed_result_regions": ["us-east-1", "eu-west-1"]}, {"allowed_result_regions": None},
    {"allowed_result_regions": ["eu-west-1"], "results_region": "eu-west-1"},
    {"access_budgets": {"media_engagement": "arn:aws:cleanrooms:us-east-1:222233334444:membership/"
                                            f"{MEMBERSHIP_ID}/configuredtableassociation/{SEG_ID}"}},
])
def test_good_outputs_pass(changes):
    data = copy.deepcopy(GOOD)
    data.update(changes)
    region = data["region"]
    arn = SEG_ARN.replace(REGION, region)
    data["analysis_templates"]["customer_segments"]["arn"] = arn
    # The model's AnalysisTemplateArn pattern has no room for us-gov regions; `budget` reads no templates.
    argv = ["budget", "--outputs", "-"] if region.startswith("us-gov") else RUN
    factory = NoAws()
    with pytest.raises(AssertionError, match="client was requested"):
        invoke(argv, json.dumps(data), factory)
    assert factory.calls == [("cleanrooms", region)]


@pytest.mark.parametrize("argv, stdin", [
    (JOB_RUN, J), ([*JOB_RUN, "--worker-type", "CR.4X", "--workers", "128", "--param", "min_orders=3"], J),
    ([*JOB_RUN, "--workers", "4"], job(compute={"workerType": "CR.1X"})), (JOB_RUN, job(compute=None)),
    (JOB_RUN, job(sha256="AB" * 32)), (JOB_RUN, job_outputs(pending_jobs=None, artifact_bucket=None)),
    (["job-status", "--outputs", "-", QUERY_ID], J), (["history", "--outputs", "-", "--jobs"], J),
    (RUN, J),  # the job outputs do not get in the way of queries
])
def test_good_job_inputs_get_as_far_as_aws(argv, stdin):
    factory = NoAws()
    with pytest.raises(AssertionError, match="client was requested"):
        invoke(argv, stdin, factory)
    assert factory.calls == [("cleanrooms", REGION)]


def test_no_refresh_skips_the_dashboard_output():
    with pytest.raises(AssertionError, match="client was requested"):
        invoke([*RUN, "--no-refresh"], outputs(quicksight="not an object"))


def test_no_distribute_skips_the_receivers_output():
    with pytest.raises(AssertionError, match="client was requested"):
        invoke([*RUN, "--no-distribute"], outputs(result_receivers=[ACCOUNT]))


def test_template_compute_and_tables_may_be_partial_or_null():
    for changes in ({"compute": {"workerType": "CR.4X"}}, {"compute": {"workers": 400}}, {"compute": {}},
                    {"tables": ["retail_purchases"]}, {"tables": []}):
        with pytest.raises(AssertionError, match="client was requested"):
            invoke(RUN, template(**changes))


def test_outputs_that_are_not_utf8(tmp_path):
    path = tmp_path / "outputs.json"
    path.write_bytes(b'{"region": "\xff"}')
    code, _, err, factory = invoke(["budget", "--outputs", str(path)], None)
    assert code == 2 and factory.calls == [] and len(err.splitlines()) == 1
    assert "not UTF-8" in err and "--outputs" in err


def test_unknown_profile_lists_the_configured_ones():
    code, _, err, _ = invoke([*RUN, "--profile", "org-c"], G)
    assert code == 2
    assert err.startswith("error: --profile 'org-c' is not a configured AWS profile")
    assert "default, org-a" in err


def test_aws_profile_from_the_environment_is_checked_before_boto3(monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "org-z")
    err = io.StringIO()
    code = main(["budget", "--outputs", "-"], stdin=io.StringIO(G), stdout=io.StringIO(), stderr=err)
    assert code == 2
    assert err.getvalue().startswith("error: environment variable AWS_PROFILE (or --profile) 'org-z' is not a "
                                     "configured AWS profile")


def test_id_patterns_come_from_the_installed_botocore_model():
    path = pathlib.Path(botocore.__file__).parent / "data" / "cleanrooms" / checks.CLEANROOMS_API_VERSION
    shapes = json.loads(gzip.decompress((path / "service-2.json.gz").read_bytes()))["shapes"]
    for shape in ("MembershipIdentifier", "CollaborationIdentifier", "ProtectedQueryIdentifier",
                  "AnalysisTemplateArn", "KeyPrefix", "ParameterName",
                  "ProtectedQueryS3OutputConfigurationBucketString"):
        pattern, lo, hi = checks.model_string(shape)
        assert pattern.pattern == shapes[shape]["pattern"]
        assert (lo, hi) == (shapes[shape].get("min", 0), shapes[shape].get("max", 1 << 30))


def test_each_range_flag_has_its_own_message():
    messages = {invoke([*RUN, flag, value], G)[2] for flag, value in
                [("--max-concurrency", "0"), ("--timeout", "0"), ("--retries", "-1"), ("--max-rows", "-1")]}
    assert len(messages) == 4
