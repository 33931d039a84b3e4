"""What the program declares must be accepted by the real APIs.

Every aws-native resource's inputs are validated against the AWS
CloudFormation resource schema cfn-lint ships (Cloud Control applies the same
schema), and every IAM document is run through parliament.
"""

from __future__ import annotations


from tests.harness import run_stack, stack_ref
from tests.support.cfn_schema import validate_native
from tests.support.iam_lint import iam_documents_from_mock_resources, lint_policy


def test_every_aws_native_input_matches_its_cloudformation_schema(bootstrap):
    checked = 0
    rounds = {"org-a round 1": bootstrap.a1, "org-b round 2": bootstrap.b2, "org-a round 3": bootstrap.a3}
    for label, run in rounds.items():
        for resource in run.resources:
            if resource.custom and resource.typ.startswith("aws-native:"):
                errors = validate_native(resource.typ, resource.inputs)
                assert errors == [], f"{label}: {resource.name} ({resource.typ}):\n" + "\n".join(errors)
                checked += 1
    # Collaboration, 2 memberships, budget, 2 tables, 2 associations, 2 templates at least.
    assert checked >= 10


def test_schema_check_can_fail(bootstrap):
    """The check above is not vacuous: a real input with one bad value is caught."""
    budget = bootstrap.b2.one("aws-native:cleanrooms:PrivacyBudgetTemplate")
    bad = dict(budget.inputs, parameters={"epsilon": 25, "usersNoisePerQuery": 20})
    assert any("epsilon" in e for e in validate_native(budget.typ, bad))
    table = bootstrap.b2.one("aws-native:cleanrooms:ConfiguredTable")
    bad = dict(table.inputs, allowedColumns=["Customer_Key"])
    assert validate_native(table.typ, bad)


def test_every_iam_document_passes_parliament(bootstrap):
    documents = []
    for run in (bootstrap.a3, bootstrap.b2):
        documents += iam_documents_from_mock_resources(run.resources)
    kinds = {d.kind for d in documents}
    assert kinds == {"trust", "identity", "resource"}, kinds
    for document in documents:
        findings = lint_policy(document.document, kind=document.kind)
        assert findings == [], f"{document.resource_name} ({document.kind}): {findings}"
    assert len(documents) >= 8


def test_org_b_as_analyst_also_matches_the_schemas():
    from tests.test_stacks import _b_analyst_overrides

    org_a, org_b = _b_analyst_overrides()
    a1 = run_stack("org-a", overrides=org_a)
    b2 = run_stack("org-b", overrides=org_b, peer_outputs={stack_ref("org-a"): a1.outputs})
    a3 = run_stack("org-a", overrides=org_a, peer_outputs={stack_ref("org-b"): b2.outputs})
    for run in (a1, b2, a3):
        for resource in run.resources:
            if resource.custom and resource.typ.startswith("aws-native:"):
                assert validate_native(resource.typ, resource.inputs) == [], resource.name
