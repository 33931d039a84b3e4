"""`python -m offline.plan`: the reviewers' offline plan, on the session's bootstrap rounds."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from offline import harness as offline_harness
from offline import plan
from tests import harness
from tests.harness import ROOT

CR = "aws-native:cleanrooms"
# Org B's privacy budget with a different epsilon: one input of one resource changes.
EPSILON_5 = {"org-b": {"differentialPrivacy": {"epsilon": 5, "usersNoisePerQuery": 20,
                                               "autoRefresh": "CALENDAR_MONTH"}}}


@pytest.fixture(scope="module")
def rounds(bootstrap):
    return plan.rounds_from(bootstrap)


@pytest.fixture(scope="module")
def saved(rounds, tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    path.write_text(plan.to_json(plan.build_plan(rounds)))
    return path


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def test_final_text_lists_the_collaboration_under_the_owner_with_protect(rounds):
    lines = plan.render_text(plan.build_plan(rounds)).splitlines()
    assert lines[0].startswith("== org-a after the final round (its round 5)")
    owner = next(i for i, line in enumerate(lines) if line.strip().startswith("cleanrooms:roles:CollaborationOwner"))
    collab = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{CR}:Collaboration "))
    assert owner < collab and _indent(lines[collab]) == _indent(lines[owner]) + 2
    assert all(_indent(line) > _indent(lines[owner]) for line in lines[owner + 1:collab + 1])
    fields = lines[collab].split()
    assert fields[:3] == [f"{CR}:Collaboration", "org-a-owner-collaboration", "protect"]
    assert "name=retail-media-insights" in fields and "engine=SPARK" in fields and "members=222222222222" in fields
    # Templates exist after the final round; nothing is pending; org-b is there too.
    assert any(line.strip().startswith(f"{CR}:AnalysisTemplate  org-a-analyst-templates-customer-segments")
               for line in lines)
    assert any(line.split() == ["pending_templates", "{}", "(nothing", "pending)"] for line in lines)
    assert any(line.startswith("== org-b after the final round (its round 4)") for line in lines)
    membership_b = next(line for line in lines if "org-b-member-membership" in line)
    assert "protect" in membership_b.split() and "collaboration=3687eb1f" in membership_b


def test_round_1_shows_what_waits_for_org_b(rounds):
    text = plan.render_text(plan.build_plan(rounds, "1"))
    # The SQL templates read org B's table and wait; the PySpark job reads only org A's own.
    templates = [line for line in text.splitlines() if f"{CR}:AnalysisTemplate" in line]
    assert len(templates) == 1 and "name=retail_order_mix" in templates[0] and "format=PYSPARK_1_0" in templates[0]
    assert ("pending_templates  channel_reach waits for media_engagement; "
            "customer_segments waits for media_engagement") in text
    assert any(line.split() == ["pending_jobs", "{}", "(nothing", "pending)"] for line in text.splitlines())
    assert "partner 'org-b' has no outputs yet" in text
    assert "== org-b after round 1: not deployed yet (its first round is 2) ==" in text


def test_a_read_role_shows_whom_it_trusts(rounds):
    """The trust's memberships (ForAnyValue:ArnEquals) and the query runner's ExternalId are in the summary."""
    stacks = plan.build_plan(rounds)["stacks"]
    role = next(r for r in stacks["org-b"]["resources"] if r["name"] == "org-b-producer-cleanrooms-read")
    org_a, org_b = (stacks[s]["exports"]["membership_id"] for s in ("org-a", "org-b"))
    assert sorted(arn.rsplit("/", 1)[1] for arn in role["summary"]["forArns"]) == sorted([org_a, org_b])
    assert role["summary"]["forQueryRunner"] == [f"arn:aws:*:us-east-1:*:dbuser:*/{org_a}*"]  # org A runs queries


def test_json_is_deterministic(rounds, capsys):
    assert plan.main(["--json"]) == 0  # a second, independent run of every round
    printed = capsys.readouterr().out
    assert printed == plan.to_json(plan.build_plan(rounds))
    parsed = json.loads(printed)
    resources = parsed["stacks"]["org-a"]["resources"]
    assert [r["urn"] for r in resources] == sorted(r["urn"] for r in resources)
    budget = next(r for r in parsed["stacks"]["org-b"]["resources"] if r["type"] == f"{CR}:PrivacyBudgetTemplate")
    assert budget["summary"]["epsilon"] == 10 and budget["parent"].endswith("::org-b-privacy-budget")


def test_diff_against_the_saved_plan_reports_no_change(saved, rounds, capsys):
    # The same rounds (test_json_is_deterministic shows an independent run gives the same plan).
    assert plan.main(["--diff", str(saved)], runs=rounds) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"no change against {saved}"
    assert "org-a: 0 added, 0 removed, 0 changed" in out


def test_diff_reports_a_changed_input(saved, capsys):
    assert plan.main(["--stack", "org-b", "--diff", str(saved)], overrides=EPSILON_5) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "org-b: 0 added, 0 removed, 1 changed",
        f"  ~ {CR}:PrivacyBudgetTemplate  org-b-privacy-budget-template",
        "      parameters.epsilon: 10 -> 5",
        f"0 added, 0 removed, 1 changed resource(s) against {saved}",
    ]


def test_diff_of_round_1_against_the_final_plan(saved, rounds, capsys):
    assert plan.main(["--round", "1", "--stack", "org-a", "--json", "--diff", str(saved)], runs=rounds) == 0
    diff = json.loads(capsys.readouterr().out)
    org_a = diff["stacks"]["org-a"]
    assert {r["name"] for r in org_a["removed"]} == {"org-a-analyst-templates-channel-reach",
                                                     "org-a-analyst-templates-customer-segments"}
    [role] = org_a["changed"]
    assert role["name"] == "org-a-producer-cleanrooms-read"
    assert [c["path"] for c in role["changes"]] == [
        "assumeRolePolicy.Statement.1.Condition.ForAnyValue:ArnEquals.aws:SourceArn.1"]
    assert "pending_templates.customer_segments" in [c["path"] for c in org_a["exports"]]
    assert diff["notes"] == ["the saved plan is of round final, this one of round 1"]


def test_diff_with_a_missing_file_exits_2_with_one_line(tmp_path):
    missing = tmp_path / "nope.json"
    result = subprocess.run([sys.executable, "-m", "offline.plan", "--diff", str(missing)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"error: --diff {missing}: no such file\n"


@pytest.mark.parametrize("content, problem", [("{not json", "not JSON"), ('{"stacks": []}', "not a plan")])
def test_diff_with_a_malformed_file_exits_2(tmp_path, capsys, content, problem):
    bad = tmp_path / "plan.json"
    bad.write_text(content)
    assert plan.main(["--diff", str(bad)], runs={}) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith(f"error: --diff {bad}: {problem}")


def test_config_error_is_one_line_and_exit_2(capsys):
    overrides = {"org-a": {"differentialPrivacy": {"epsilon": 25}}}
    assert plan.main(["--stack", "org-a", "--round", "1"], overrides=overrides) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("error: config 'cleanrooms-collab:differentialPrivacy")
    assert "epsilon" in line and "25" in line and line.endswith(" (org-a, round 1)")
    # tests.harness re-exports offline.harness: its LAST_MONITOR is the run that just failed.
    assert harness.LAST_MONITOR is offline_harness.LAST_MONITOR is not None


def test_the_command_runs_without_the_cli_or_credentials(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    result = subprocess.run([sys.executable, "-m", "offline.plan", "--stack", "org-a", "--round", "1",
                             "--save", str(tmp_path / "plan.json")], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no warnings, no tracebacks (not even at exit)
    assert "pending_templates  channel_reach waits for media_engagement" in result.stdout
    saved = json.loads((tmp_path / "plan.json").read_text())
    assert list(saved["stacks"]) == ["org-a"] and saved["round"] == "1"
