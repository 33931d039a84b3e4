"""The shipped three-organization example (examples/three-orgs): rounds, policies, the local clean room.

Checked on every change, so that nothing in the program or the tools quietly assumes two members.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml

from model.collaboration import from_stack_files
from model.validator import check_templates
from model.templates import load_queries
from offline import deployer_policy, plan, stacks
from offline.plan import _fingerprint
from queryrunner import cli
from scripts import generate_data
from tests.harness import ROOT, run_stack, stack_ref
from tests.policy_support import evaluate

EXAMPLE = ROOT / "examples" / "three-orgs"


@pytest.fixture(scope="module")
def rounds():
    return plan.simulate(root=EXAMPLE)


def test_the_rounds_are_the_readmes_five(rounds):
    assert rounds.stacks == ("org-a", "org-b", "org-c")
    assert rounds.order == ((1, "org-a"), (2, "org-b"), (3, "org-c"), (4, "org-a"), (5, "org-b"))
    # Round 5: org B's read role learns org C's membership, which did not exist at round 2.
    assert [c["name"] for c in rounds.changes[5] if c["type"] == "aws:iam/role:Role"] == [
        "org-b-producer-cleanrooms-read"]
    assert sorted(s for _, s in rounds.check) == ["org-a", "org-b", "org-c"]


def test_after_the_rounds_another_up_on_any_stack_changes_nothing(rounds):
    final = {stack: rounds.latest(stack)[1] for stack in rounds.stacks}
    for stack in rounds.stacks:
        peers = {stack_ref(other): run.outputs for other, run in final.items() if other != stack}
        assert _fingerprint(run_stack(stack, peer_outputs=peers, root=EXAMPLE)) == _fingerprint(final[stack])


def test_the_collaboration_invites_both_partners_and_org_c_is_a_member(rounds):
    owner = rounds.latest("org-a")[1]
    collaboration = owner.one("aws-native:cleanrooms:Collaboration")
    assert sorted(m["accountId"] for m in collaboration.inputs["members"]) == ["222222222222", "333333333333"]
    org_c = rounds.latest("org-c")[1]
    assert org_c.one("aws-native:cleanrooms:Membership").inputs["collaborationIdentifier"] == \
        owner.outputs["collaboration_id"]
    table = org_c.one("aws-native:cleanrooms:ConfiguredTable")
    assert table.input("analysisRules.0.policy.v1.custom.differentialPrivacy") is None
    assert table.input("analysisRules.0.policy.v1.custom.allowedAnalysisProviders") == ["111111111111"]
    assert owner.outputs["pending_templates"] == {}
    assert sorted(owner.outputs["analysis_templates"]) == ["awareness_engagement", "channel_reach",
                                                           "customer_segments", "survey_satisfaction"]


def test_every_stack_passes_the_policy_pack_with_its_generated_config(rounds):
    configs = stacks.policy_configs(EXAMPLE)
    assert sorted(configs) == ["policy/config/org-b.json", "policy/config/org-c.json"]
    for stack in rounds.stacks:
        config = json.loads(configs.get(f"policy/config/{stack}.json", "{}"))
        report = evaluate(rounds.latest(stack)[1], config=config)
        assert report.violations == [] and report.not_applicable == [], (stack, str(report))


def test_deployer_policies_cover_the_third_stack_in_its_own_account(rounds):
    files = deployer_policy.files_for(deployer_policy.stack_runs(rounds, EXAMPLE), EXAMPLE)
    assert {"policy/iam/org-c-deployer.json", "policy/iam/org-c-preview.json"} <= set(files)
    text = files["policy/iam/org-c-deployer.json"]
    assert "333333333333" in text and "111111111111" not in text


def test_the_generator_makes_the_examples_data(tmp_path):
    summary = json.loads((EXAMPLE / "data" / "generated.json").read_text())
    generate_data.generate(summary["retail_purchases_rows"], summary["media_engagement_rows"],
                           summary["overlapping_customers"], summary["seed"], tmp_path,
                           c_rows=summary["survey_panel_rows"], c_overlap=summary["survey_overlap_with_retail"])
    for path in sorted(p for p in tmp_path.rglob("*") if p.is_file()):
        relative = path.relative_to(tmp_path)
        assert path.read_bytes() == (EXAMPLE / "data" / relative).read_bytes(), relative
    # The same seed gives the two shipped datasets of the default stacks too (customer i is one person).
    assert (tmp_path / "retail_purchases" / "retail_purchases.csv").read_bytes() == \
        (ROOT / "data" / "retail_purchases" / "retail_purchases.csv").read_bytes()


@pytest.fixture
def fine_grained(tmp_path):
    """The example in a temp folder, with a template grouping finely enough for groups of 3 and 4."""
    folder = tmp_path / "three-orgs"
    shutil.copytree(EXAMPLE, folder)
    for path in folder.glob("Pulumi.*.yaml"):
        doc = yaml.safe_load(path.read_text())
        doc["config"]["cleanrooms-collab:dataDir"] = str(folder / "data")
        path.write_text(yaml.safe_dump(doc))
    (folder / "data" / "queries" / "fine.sql").write_text(
        "-- description: survey satisfaction per segment, awareness, region, category and age group\n"
        "SELECT s.panel_segment, s.brand_aware, r.region, r.product_category, r.age_group,\n"
        "       COUNT(*) AS customer_count, AVG(s.satisfaction) AS avg_satisfaction\n"
        "FROM retail_purchases r INNER JOIN survey_panel s ON r.customer_key = s.customer_key\n"
        "GROUP BY s.panel_segment, s.brand_aware, r.region, r.product_category, r.age_group\n")
    return folder


def _run(*argv: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    return cli.main(list(argv), stdout=stdout, stderr=stderr), stdout.getvalue(), stderr.getvalue()


def test_the_local_room_applies_org_cs_threshold_of_5_not_org_as_3(fine_grained, tmp_path):
    data = fine_grained / "data"
    code, out, err = _run("run", "fine", "--local", "--stacks-dir", str(fine_grained), "--out",
                          str(tmp_path / "results"), "--state-dir", str(tmp_path / "state"))
    assert code == 0, err
    shown = json.loads(json.dumps([row for row in _csv_rows(tmp_path / "results" / "fine")]))
    keys = ("panel_segment", "brand_aware", "region", "product_category", "age_group")
    # The exact group sizes, straight from the CSVs (each customer is one row in each table).
    con = duckdb.connect()
    sizes = {tuple(row[:5]): row[5] for row in con.execute(
        f"SELECT s.panel_segment, s.brand_aware, r.region, r.product_category, r.age_group, COUNT(*) "
        f"FROM read_csv('{data}/retail_purchases/retail_purchases.csv', all_varchar=true) r "
        f"JOIN read_csv('{data}/survey_panel/survey_panel.csv', all_varchar=true) s USING (customer_key) GROUP BY ALL").fetchall()}
    small = [k for k, n in sizes.items() if n in (3, 4)]
    assert small, "the data must have groups of 3 or 4 customers for this test to mean anything"
    shown_keys = {tuple(row[k] for k in keys) for row in shown}
    assert shown_keys == {k for k, n in sizes.items() if n >= 5}  # org A's 3 alone would show `small` too
    assert not shown_keys & set(small)
    suppressed = sum(1 for n in sizes.values() if n < 5)
    assert f"{suppressed} row(s) below the aggregation threshold suppressed" in out + err


def _csv_rows(folder: Path) -> list[dict]:
    import csv

    (path,) = folder.glob("*.csv")
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_whole_example_runs_locally_with_its_own_ledger(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run("run", "--all", "--local", "--stacks-dir", str(EXAMPLE), "--seed", "7",
                          "--out", str(tmp_path / "results"))
    assert code == 0, err
    for template in ("awareness_engagement", "channel_reach", "customer_segments", "survey_satisfaction"):
        assert f"[{template}] SUCCESS" in out + err
    # Its stacks are named like the project's (org-a, org-b): its ledger is its own.
    assert (tmp_path / ".localroom" / "stacks-examples-three-orgs" / "org-a" / "privacy-budget.json").is_file()
    assert not (tmp_path / ".localroom" / "org-a").exists()


@pytest.mark.parametrize("given, expected", [
    ("nowhere", "error: --stacks-dir nowhere is not a folder"),
    ("data", "error: --stacks-dir data has no Pulumi.<stack>.yaml"),
])
def test_stacks_dir_errors_are_one_line(given, expected, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    code, out, err = _run("run", "--all", "--local", "--stacks-dir", given, "--state-dir", str(tmp_path))
    assert code == 2 and err.strip() == expected


def test_stacks_dir_is_refused_without_local():
    code, _, err = _run("run", "--all", "--stacks-dir", str(EXAMPLE))
    assert code == 2 and "--stacks-dir only applies with --local" in err


def test_a_threshold_rule_refusal_names_every_table_whose_rule_refuses():
    settings, collab = from_stack_files("org-a", root=EXAMPLE)
    (template,) = [q for q in load_queries(EXAMPLE / "data" / "queries", ["survey_satisfaction"])]
    bad = template.__class__(**{**template.__dict__, "sql": template.sql.replace(
        "AVG(s.satisfaction)", "AVG(s.satisfaction * 2)")})
    with pytest.raises(Exception) as refused:
        check_templates((bad,), collab)
    message = str(refused.value)
    assert "(retail_purchases of org-a, survey_panel of org-c)" in message
    assert "aggregates an expression" in message


@pytest.mark.parametrize("argv, expected", [
    (["--c-rows", "-1"], "--c-rows must be a whole number >= 0 (0: no third organization), got -1"),
    (["--c-rows", "100", "--c-overlap", "101"],
     "--c-overlap must be a whole number between 0 and min(--a-rows, --c-rows) = 100, got 101"),
])
def test_the_generators_third_organization_flags_are_checked(argv, expected, tmp_path, capsys):
    assert generate_data.main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {expected}"
    assert not (tmp_path / "out").exists()
