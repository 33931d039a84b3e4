"""Cross-checks between all members: who the owner invites, and what every other stack says of them.

The owner's stack exports the collaboration's member list (`members`); every other
stack is refused at preview, before any resource, when it is not on that list,
when its partner list disagrees with it, or when one of its templates reads the
table of a member the owner does not invite. Run on the three-organization
example (examples/three-orgs), so a third member is what is being checked.
"""

from __future__ import annotations

import pulumi
import pytest

from offline import plan
from tests import harness
from tests.harness import PROJECT, ROOT, run_stack, stack_config, stack_ref

EXAMPLE = ROOT / "examples" / "three-orgs"
A, B, C = "111111111111", "222222222222", "333333333333"
OWNER_ROLES = ["analyst", "collaboration_owner", "data_producer"]


@pytest.fixture(scope="module")
def rounds():
    return plan.simulate(root=EXAMPLE)


def member(name, account, roles, dataset=None, added_by="invitation", ml_abilities=()):
    return {"name": name, "account_id": account, "roles": sorted(roles), "dataset": dataset,
            "runs_jobs": False, "added_by": added_by, "ml_abilities": list(ml_abilities)}


def owner_outputs(*members) -> dict:
    """What org A's stack would export, reduced to what a joining stack reads of its member list."""
    return {"organization": "org-a", "account_id": A, "roles": OWNER_ROLES, "region": "us-east-1",
            "members": list(members)}


INVITED = (member("org-a", A, OWNER_ROLES, "retail_purchases"),
           member("org-b", B, ["data_producer"], "media_engagement"),
           member("org-c", C, ["data_producer"], "survey_panel"))


def refusal(stack: str, owner: dict, overrides: dict | None = None) -> str:
    with pytest.raises(pulumi.RunError) as info:
        run_stack(stack, peer_outputs={stack_ref("org-a"): owner}, overrides=overrides, root=EXAMPLE)
    message = str(info.value)
    assert "\n" not in message
    # Refused before anything exists: no membership, no table, no bucket.
    assert [r.typ for r in harness.LAST_MONITOR.registered if not r.typ.startswith("pulumi:")] == []
    return message


def partners_of(stack: str) -> list[dict]:
    return [dict(p) for p in stack_config(stack, root=EXAMPLE)[f"{PROJECT}:partners"]]


def test_the_owner_exports_every_member_as_it_invites_them(rounds):
    assert rounds.latest("org-a")[1].outputs["members"] == list(INVITED)
    # Joining stacks export no member list: the owner's is the one every stack checks against.
    assert "members" not in rounds.latest("org-c")[1].outputs


def test_a_stack_the_owner_does_not_invite_is_refused_naming_both_stacks():
    message = refusal("org-c", owner_outputs(*INVITED[:2]))
    assert message == (f"config '{PROJECT}:organization': 'org-c' (account {C}) is not invited by org-a's stack "
                       f"organization/{PROJECT}/org-a, whose members are ['org-a', 'org-b']; add it to that "
                       "stack's partners (addedBy: changeRequest once the collaboration exists) before this "
                       "stack joins")


def test_an_invited_account_under_another_name_or_a_name_with_another_account_is_refused():
    message = refusal("org-c", owner_outputs(*INVITED), {"organization": "org-z"})
    assert message.startswith(f"config '{PROJECT}:organization': is 'org-z', but org-a's stack")
    assert f"invites account {C} as 'org-c'" in message
    message = refusal("org-c", owner_outputs(*INVITED), {"accountId": "444444444444"})
    assert message.startswith(f"config '{PROJECT}:accountId': is '444444444444', but org-a's stack "
                              f"organization/{PROJECT}/org-a invites 'org-c' with '{C}'")


def test_a_stack_whose_own_roles_differ_from_its_invitation_is_refused():
    invited = (*INVITED[:2], member("org-c", C, ["data_producer", "result_receiver"], "survey_panel"))
    message = refusal("org-c", owner_outputs(*invited))
    assert message.startswith(f"config '{PROJECT}:roles': is ['data_producer'], but org-a's stack")
    assert "invites 'org-c' with ['data_producer', 'result_receiver']" in message


def test_a_partner_list_missing_a_member_names_the_member_and_the_owner():
    message = refusal("org-c", owner_outputs(*INVITED), {"partners": partners_of("org-c")[:1]})
    assert message == (f"config '{PROJECT}:partners': lacks ['org-b']: org-a's stack organization/{PROJECT}/org-a "
                       "invites them; list every other member of the collaboration here, as the owner's stack does")


def test_a_partner_the_owner_does_not_invite_is_refused_by_index():
    extra = {"name": "org-d", "accountId": "444444444444", "roles": ["result_receiver"],
             "stack": f"organization/{PROJECT}/org-d"}
    message = refusal("org-b", owner_outputs(*INVITED), {"partners": [*partners_of("org-b"), extra]})
    assert message.startswith(f"config '{PROJECT}:partners[2]': 'org-d' is not a member of the collaboration: "
                              f"org-a's stack organization/{PROJECT}/org-a does not invite it")


@pytest.mark.parametrize("change, key, shown", [
    ({"accountId": "444444444444"}, "accountId", f"is '444444444444', but org-a's stack organization/{PROJECT}/"
                                                 f"org-a invites 'org-b' with '{B}'"),
    ({"roles": ["data_producer", "result_receiver"]}, "roles", "with ['data_producer']"),
    ({"dataset": "survey_panel"}, "dataset", "is 'survey_panel', but"),
    ({"addedBy": "changeRequest"}, "addedBy", "is 'changeRequest', but"),
])
def test_a_partner_entry_that_disagrees_with_the_owners_names_its_key(change, key, shown):
    partners = partners_of("org-c")
    partners[1].update(change)  # org-c's entry for org-b
    message = refusal("org-c", owner_outputs(*INVITED), {"partners": partners})
    assert message.startswith(f"config '{PROJECT}:partners[1].{key}': ") and shown in message


def _org_c_as_analyst() -> dict:
    """Org C as the analyst (not the owner): a member whose templates read the other members' tables."""
    a, b = partners_of("org-c")
    return {"roles": ["data_producer", "analyst"], "partners": [dict(a, roles=["collaboration_owner", "data_producer"]), b],
            "analyst": {"queries": ["channel_reach"], "resultFormat": "CSV", "resultsPrefix": "results"},
            "analysisRule": {"type": "CUSTOM", "allowedAnalyses": "ANY_QUERY", "allowedAnalysisProviders": [C],
                             "aggregationThreshold": {"column": "customer_key", "minimum": 5}}}


def test_an_analysts_template_over_the_table_of_an_uninvited_member_names_the_template():
    owner = owner_outputs(member("org-a", A, ["collaboration_owner", "data_producer"], "retail_purchases"),
                          member("org-c", C, ["analyst", "data_producer"], "survey_panel"))
    owner["roles"] = ["collaboration_owner", "data_producer"]
    message = refusal("org-c", owner, _org_c_as_analyst())
    assert message == (f"config '{PROJECT}:analyst.queries': template 'channel_reach' "
                       "(examples/three-orgs/data/queries/channel_reach.sql) reads 'media_engagement' of 'org-b', "
                       f"which org-a's stack organization/{PROJECT}/org-a does not invite; drop the template, or have "
                       "'org-a' invite 'org-b'")


def test_the_same_analyst_invited_with_every_member_is_not_refused():
    owner = owner_outputs(member("org-a", A, ["collaboration_owner", "data_producer"], "retail_purchases"),
                          INVITED[1], member("org-c", C, ["analyst", "data_producer"], "survey_panel"))
    owner["roles"] = ["collaboration_owner", "data_producer"]
    run = run_stack("org-c", peer_outputs={stack_ref("org-a"): owner}, overrides=_org_c_as_analyst(), root=EXAMPLE)
    assert run.outputs["organization"] == "org-c"  # no collaboration id yet: nothing to join, nothing refused


def test_an_owner_analysts_template_over_a_table_no_member_has_is_refused():
    # The owner invites only org B: its survey template reads a table no member contributes.
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-a", overrides={"partners": partners_of("org-a")[:1]}, root=EXAMPLE)
    message = str(info.value)
    assert "survey_satisfaction.sql" in message and "survey_panel" in message


def test_before_the_owner_deploys_nothing_is_refused_and_the_log_says_so():
    run = run_stack("org-c", root=EXAMPLE)
    assert any("no member list from org-a's stack" in line for line in run.logs)
    assert run.outputs["membership_id"] is None


def test_after_the_rounds_every_stack_agrees_with_the_owners_list(rounds):
    final = {stack: rounds.latest(stack)[1] for stack in rounds.stacks}
    for stack in ("org-b", "org-c"):
        assert final[stack].outputs["membership_id"] is not None
        assert not any("no member list" in line for line in final[stack].logs)


# --------------------------------------------------------------------------
# One stack's own partner list, before any partner is read


@pytest.mark.parametrize("change, key, shown", [
    (lambda ps: ps[0].update(name="org-c"), "partners[0].name", "is 'org-c', this stack's own organization"),
    (lambda ps: ps[1].update(accountId=C), "partners[1].accountId", f"is '{C}', this stack's own account"),
    (lambda ps: ps[1].update(name="org-a"), "partners[1].name", "'org-a' is already partners[0]'s"),
    (lambda ps: ps[1].update(accountId=A), "partners[1].accountId", f"'{A}' is already partners[0]'s"),
])
def test_a_partner_listed_twice_or_naming_this_stack_is_refused_by_index(change, key, shown):
    partners = partners_of("org-c")
    change(partners)
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-c", overrides={"partners": partners}, root=EXAMPLE)
    assert str(info.value).startswith(f"config '{PROJECT}:{key}': {shown}")


def _receivers(n: int) -> list[dict]:
    return [{"name": f"org-r{i}", "accountId": f"44444444440{i}", "roles": ["result_receiver"],
             "stack": f"organization/{PROJECT}/org-r{i}"} for i in range(n)]


def test_more_partners_than_the_invited_members_quota_are_refused_until_it_is_raised():
    partners = [*partners_of("org-a"), *_receivers(4)]  # six invited members, the default quota is five
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-a", overrides={"partners": partners}, root=EXAMPLE)
    message = str(info.value)
    assert message.startswith(f"config '{PROJECT}:partners': the collaboration invites 6 members, above the "
                              "quota of 5 ('Members invited per collaboration'")
    assert "clean-rooms-quotas.html" in message and "collaboration.invitedMembersQuota" in message
    collaboration = dict(stack_config("org-a", root=EXAMPLE)[f"{PROJECT}:collaboration"], invitedMembersQuota=6)
    run = run_stack("org-a", overrides={"partners": partners, "collaboration": collaboration}, root=EXAMPLE)
    assert len(run.one("aws-native:cleanrooms:Collaboration").inputs["members"]) == 6
