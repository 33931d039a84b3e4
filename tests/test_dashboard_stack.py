"""The dashboard as the analyst's stack declares it, from config."""

from __future__ import annotations

import json

import pytest

from model.errors import ConfigError
from tests.harness import run_stack, stack_ref
from tests.support.cfn_schema import validate_native
from tests.support.iam_lint import iam_documents_from_mock_resources, lint_policy

OWNER = "arn:aws:quicksight:us-east-1:111111111111:user/default/alice"
VIEWERS = "arn:aws:quicksight:us-east-1:111111111111:group/default/marketing"
ENABLED = {"quicksight": {"enabled": True, "owners": [OWNER], "viewers": [VIEWERS]}}


@pytest.fixture(scope="module")
def with_dashboard(bootstrap):
    return run_stack("org-a", overrides=ENABLED, peer_outputs={stack_ref("org-b"): bootstrap.b2.outputs})


def test_shipped_config_declares_nothing_quicksight(bootstrap):
    for run in (bootstrap.a3, bootstrap.b2):
        assert not [r.typ for r in run.resources if "quicksight" in r.typ.lower() or "dashboard" in r.typ.lower()]
    assert bootstrap.a3.outputs["quicksight"] is None


def test_dashboard_reads_the_published_results_of_its_template(with_dashboard):
    run = with_dashboard
    manifest = json.loads(next(r for r in run.of_type("aws:s3/bucketObjectv2:BucketObjectv2")
                               if r.inputs["key"].endswith("manifest.json")).inputs["content"])
    assert manifest["fileLocations"] == [{"URIPrefixes": [
        "s3://org-a-cleanrooms-results-111111111111/published/customer_segments/"]}]
    assert run.outputs["quicksight"]["published_prefix"] == "published/customer_segments"
    assert run.outputs["quicksight"]["dataset_id"] == run.one("aws:quicksight/dataSet:DataSet").inputs["dataSetId"]
    principals = set()
    for resource in run.resources:
        for permission in resource.inputs.get("permissions") or []:
            principals.add(permission["principal"])
    assert principals == {OWNER, VIEWERS}


def test_dashboard_inputs_and_policies_pass_the_real_contracts(with_dashboard):
    dashboard = with_dashboard.one("aws-native:quicksight:Dashboard")
    assert validate_native(dashboard.typ, dashboard.inputs) == []
    for document in iam_documents_from_mock_resources(with_dashboard.resources):
        assert lint_policy(document.document, kind=document.kind) == [], document.resource_name


@pytest.mark.parametrize("quicksight, analyst, key", [
    ({"enabled": True, "owners": []}, None, "quicksight.owners"),
    ({"enabled": True, "owners": ["arn:aws:quicksight:us-east-1:999999999999:user/default/x"]}, None,
     "quicksight.owners"),
    ({"enabled": True, "owners": [OWNER], "viewers": [OWNER]}, None, "quicksight.viewers"),
    ({"enabled": True, "owners": [OWNER], "template": "nope"}, None, "quicksight.template"),
    ({"enabled": True, "owners": [OWNER]}, {"resultFormat": "PARQUET"}, "analyst.resultFormat"),
])
def test_bad_dashboard_config_is_refused(quicksight, analyst, key):
    overrides = {"quicksight": quicksight}
    if analyst:
        overrides["analyst"] = analyst
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        run_stack("org-a", overrides=overrides)


def test_dashboard_only_for_the_analyst():
    with pytest.raises(ConfigError, match="quicksight.enabled"):
        run_stack("org-b", overrides=ENABLED)
