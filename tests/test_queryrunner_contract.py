"""The query runner understands the analyst stack's real exports (from the mocked bootstrap)."""

from __future__ import annotations

import io
import json

from botocore.stub import Stubber
import boto3

from queryrunner.cli import main
from queryrunner.outputs import Settings, load_outputs
from tests.harness import run_stack, stack_ref


def test_runner_reads_the_analyst_stack_outputs(bootstrap):
    exported = json.loads(json.dumps(bootstrap.a3.outputs))  # as `pulumi stack output --json` prints them
    settings = Settings(load_outputs("-", io.StringIO(json.dumps(exported))), {})
    assert settings.membership_id == bootstrap.a3.one("aws-native:cleanrooms:Membership").state["membershipIdentifier"]
    assert settings.membership_id != settings.collaboration_id
    templates = settings.templates()
    assert set(templates) == {"customer_segments", "channel_reach"}
    segments = templates["customer_segments"]
    assert segments.arn == exported["analysis_templates"]["customer_segments"]["arn"]
    assert [(p.name, p.type) for p in segments.parameters] == [("min_orders", "INTEGER")]
    assert segments.differential_privacy is True  # it reads org B's DP-protected table
    assert (settings.results_bucket, settings.results_prefix, settings.result_format) == (
        "org-a-cleanrooms-results-111111111111", "results", "CSV")


def test_runner_reads_the_compute_receivers_and_access_budget_outputs(bootstrap):
    """The outputs behind compute, distribute and the access-budget pre-check parse as the runner expects."""
    exported = json.loads(json.dumps(bootstrap.a3.outputs))
    settings = Settings(load_outputs("-", io.StringIO(json.dumps(exported))), {})
    assert settings.compute is None  # no default in the stack file: the service's
    assert settings.result_receivers == ()  # no partner with the result_receiver role
    assert settings.access_budgets == {}  # no table with an access budget
    for template in settings.templates().values():
        assert set(template.tables) == {"retail_purchases", "media_engagement"}
        assert template.compute is None
    assert exported["account_id"] in settings.own_accounts()


def test_runner_refuses_a_bad_parameter_for_the_real_template_before_sending(bootstrap, tmp_path):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(bootstrap.a3.outputs))
    client = boto3.client("cleanrooms", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stderr = io.StringIO()
    with Stubber(client):  # no responses queued: any request would fail the test
        code = main(["run", "customer_segments", "--outputs", str(outputs), "--param", "min_orders=many"],
                    stdout=io.StringIO(), stderr=stderr, client_factory=lambda service, region: client)
    assert code == 2
    assert "min_orders" in stderr.getvalue() and "INTEGER" in stderr.getvalue()


def test_dashboard_output_names_the_prefix_the_runner_publishes_to(bootstrap):
    owner = "arn:aws:quicksight:us-east-1:111111111111:user/default/alice"
    run = run_stack("org-a", overrides={"quicksight": {"enabled": True, "owners": [owner]}},
                    peer_outputs={stack_ref("org-b"): bootstrap.b2.outputs})
    settings = Settings(load_outputs("-", io.StringIO(json.dumps(run.outputs))), {})
    assert settings.quicksight["published_prefix"] == "published/customer_segments"
    assert settings.quicksight["template"] == "customer_segments"
    assert settings.quicksight["dataset_id"] == run.one("aws:quicksight/dataSet:DataSet").inputs["dataSetId"]
