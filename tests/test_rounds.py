"""The deploy rounds for any number of stacks (offline.plan.simulate / --rounds), found by running them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from offline import plan
from offline.plan import _fingerprint
from scripts.generate_stacks import account, write
from tests.harness import ROOT, run_stack, stack_ref


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    """A generated collaboration of four members (m01 owns it and queries; m02..m04 produce)."""
    out = tmp_path_factory.mktemp("four")
    write(4, out)
    return out, plan.simulate(root=out)


def test_the_shipped_stacks_take_the_readmes_three_rounds(bootstrap):
    rounds = plan.rounds_from(bootstrap)
    assert rounds.stacks == ("org-a", "org-b")
    assert rounds.order == ((1, "org-a"), (2, "org-b"), (3, "org-a"))
    assert rounds.check == ((4, "org-b"), (5, "org-a"))
    third = {(c["op"], c["type"].rsplit(":", 1)[-1]) for c in rounds.changes[3]}
    assert ("+", "AnalysisTemplate") in third and ("~", "Role") in third  # templates; the read role trusts B


def test_four_members_converge_and_every_round_in_the_order_changes_something(four):
    out, rounds = four
    assert rounds.stacks == ("m01", "m02", "m03", "m04")
    # Each joiner's read role must trust every member's membership (components/iam.py): the members that
    # joined before the last one need a second round, and the owner one for the templates.
    assert [s for _, s in rounds.order] == ["m01", "m02", "m03", "m04", "m01", "m02", "m03"]
    assert all(rounds.changes[n] for n, _ in rounds.order)
    assert sorted(s for _, s in rounds.check) == ["m01", "m02", "m03", "m04"]
    # The final state: m02's read role trusts the memberships of all four members.
    _, m02 = rounds.latest("m02")
    role = next(r for r in m02.resources if r.typ == "aws:iam/role:Role" and r.name == "m02-producer-cleanrooms-read")
    trusted = json.dumps(role.inputs)
    for i in (1, 2, 3, 4):
        assert f":{account(i)}:membership/" in trusted


def test_after_the_order_another_up_on_any_stack_changes_nothing(four):
    """Independently of the simulation's own check: each stack again, fed every other's final exports."""
    out, rounds = four
    final = {stack: rounds.latest(stack)[1] for stack in rounds.stacks}
    for stack in rounds.stacks:
        peers = {stack_ref(other): run.outputs for other, run in final.items() if other != stack}
        again = run_stack(stack, peer_outputs=peers, root=out)
        assert _fingerprint(again) == _fingerprint(final[stack]), stack


def test_stopping_before_the_last_round_leaves_a_stack_out_of_date(four):
    """The order is not longer than needed, and not shorter: without its last round, m03 still lacks m04."""
    out, rounds = four
    last, stack = rounds.order[-1]
    before = rounds.latest(stack, last - 1)[1]
    peers = {stack_ref(other): rounds.latest(other)[1].outputs for other in rounds.stacks if other != stack}
    assert _fingerprint(run_stack(stack, peer_outputs=peers, root=out)) != _fingerprint(before)


def test_rounds_command_prints_the_order_with_config_files(four, capsys):
    out, rounds = four
    assert plan.main(["--rounds", "--stacks-dir", str(out)], runs=rounds) == 0
    text = capsys.readouterr().out
    lines = [line for line in text.splitlines() if line.split(".")[0].strip().isdigit()]
    assert len(lines) == 7
    assert lines[0].split()[1:6] == ["pulumi", "up", "--stack", "m01", "--config-file"]
    assert f"{out}/Pulumi.m01.yaml" in lines[0] and "+Collaboration m01-owner-collaboration" in text
    assert text.rstrip().endswith("ran m04, m01, m02, m03 again without a change)")
    assert plan.main(["--rounds", "--json", "--stacks-dir", str(out)], runs=rounds) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["stack"] for r in data["rounds"]] == ["m01", "m02", "m03", "m04", "m01", "m02", "m03"]
    assert len(data["check"]) == 4


def test_the_plan_of_any_stack_and_round(four, capsys):
    out, rounds = four
    assert plan.main(["--stacks-dir", str(out), "--stack", "m04", "--round", "3"], runs=rounds) == 0
    assert "== m04 after round 3: not deployed yet (its first round is 4) ==" in capsys.readouterr().out
    assert plan.main(["--stacks-dir", str(out), "--stack", "m09"], runs=rounds) == 2
    assert capsys.readouterr().err.strip() == ("error: --stack m09: no Pulumi.m09.yaml in "
                                               f"{out}; stacks: m01, m02, m03, m04")
    assert plan.main(["--stacks-dir", str(out), "--round", "12"], runs=rounds) == 2
    assert capsys.readouterr().err.strip() == "error: --round 12: these stacks have rounds 1 to 11 (or final)"


@pytest.mark.parametrize("problem, expected", [
    ("none", "no Pulumi.<stack>.yaml in"),
    ("two owners", "exactly one stack file in"),
    ("same account", "Pulumi.m01.yaml and Pulumi.m02.yaml both have accountId: 100000000001"),
    ("same organization", "Pulumi.m01.yaml and Pulumi.m02.yaml both have organization: m01"),
])
def test_stack_files_that_cannot_be_one_collaboration_are_one_line(tmp_path, capsys, problem, expected):
    if problem != "none":
        write(3, tmp_path)
        path = tmp_path / "Pulumi.m02.yaml"
        doc = yaml.safe_load(path.read_text())
        key = {"two owners": "roles", "same account": "accountId", "same organization": "organization"}[problem]
        doc["config"][f"cleanrooms-collab:{key}"] = {"two owners": ["collaboration_owner", "data_producer"],
                                                     "same account": "100000000001",
                                                     "same organization": "m01"}[problem]
        path.write_text(yaml.safe_dump(doc))
    assert plan.main(["--rounds", "--stacks-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err


def test_generate_stacks_refuses_more_members_than_clean_rooms_allows(tmp_path):
    result = subprocess.run([sys.executable, "scripts/generate_stacks.py", "--members", "11", "--out",
                             str(tmp_path / "x")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "--members 11: this generator makes 2 to 10 members" in result.stderr
    assert not (tmp_path / "x").exists()
