"""The pack as a whole: its shape, its config schemas, and the shipped stacks pass it."""

import json
import re

import jsonschema
import pytest
import yaml
from pulumi_policy import EnforcementLevel, PolicyPack

from tests.policy_support import (BY_NAME, POLICIES, POLICY_DIR, bootstrap, effective_config, evaluate,
                                  load_config_file)


def test_pack_files_are_a_python_policy_pack():
    spec = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert spec["runtime"]["name"] == "python"
    assert spec["runtime"]["options"]["virtualenv"] == "venv"
    pins = {l.split("==")[0]: l.split("==")[1] for l in (POLICY_DIR / "requirements.txt").read_text().split()
            if "==" in l}
    assert pins == {"pulumi-policy": "1.21.0", "pulumi": "3.272.0"}
    main = (POLICY_DIR / "__main__.py").read_text()
    # __main__ only builds the pack (constructing PolicyPack serves and blocks): no policy logic there.
    assert "PolicyPack(" in main and "ResourceValidationPolicy" not in main and "def " not in main


def test_policy_names_are_unique_and_valid():
    names = [p.name for p in POLICIES]
    assert len(names) == len(set(names)) == 26
    assert all(re.fullmatch(r"[a-z0-9-]+", n) for n in names)


def test_every_policy_is_mandatory_unless_a_reason_is_written_next_to_it():
    for policy in POLICIES:
        assert policy.enforcement_level in (EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY), policy.name
        if policy.enforcement_level == EnforcementLevel.ADVISORY:
            source = next(text for text in (f.read_text() for f in (POLICY_DIR / "cleanrooms_guard").glob("*.py"))
                          if f'name="{policy.name}"' in text)
            at = source.index(f'name="{policy.name}"')
            assert "# Advisory:" in source[max(0, at - 700):at], f"{policy.name} is advisory without a reason"
    advisory = sorted(p.name for p in POLICIES if p.enforcement_level == EnforcementLevel.ADVISORY)
    assert advisory == ["iam-no-partial-wildcard-actions"]


def test_config_schemas_are_json_schemas_whose_defaults_validate():
    for policy in POLICIES:
        if policy.config_schema is None:
            continue
        schema = {"type": "object", "properties": policy.config_schema.properties}
        jsonschema.Draft7Validator.check_schema(schema)
        for key, prop in policy.config_schema.properties.items():
            assert "default" in prop and "description" in prop, f"{policy.name}.{key}"
            jsonschema.validate(prop["default"], prop)


def test_config_is_reconciled_like_the_engine_does():
    cfg = effective_config({"cleanrooms-minimum-aggregation-threshold": {"minimumIdentityCount": 5},
                            "s3-no-public-read": "advisory"})
    assert cfg["cleanrooms-minimum-aggregation-threshold"] == (EnforcementLevel.MANDATORY,
                                                               {"minimumIdentityCount": 5.0})
    assert cfg["cleanrooms-privacy-budget-bounds"][1]["maxEpsilon"] == 10.0  # a default, through protobuf
    assert cfg["s3-no-public-read"][0] == EnforcementLevel.ADVISORY
    with pytest.raises(jsonschema.ValidationError):  # the CLI refuses config outside the schema too
        effective_config({"cleanrooms-minimum-aggregation-threshold": {"minimumIdentityCount": 1}})
    with pytest.raises(ValueError, match="names no policy"):
        effective_config({"no-such-policy": {"x": 1}})


@pytest.mark.parametrize("stack", ["org-a", "org-b"])
def test_shipped_stacks_pass_with_no_violation(stack):
    report = evaluate(bootstrap()[stack])
    assert report.violations == [], str(report)
    assert report.preview_notes == []


def test_org_b_checks_receivers_with_its_ci_config_file():
    config = load_config_file(POLICY_DIR / "config" / "org-b.json")
    plain = evaluate(bootstrap()["org-b"], policies=["cleanrooms-results-to-members-only"])
    assert plain.not_applicable and "memberAccountIds" in plain.not_applicable[0][1]
    with_config = evaluate(bootstrap()["org-b"], config=config)
    assert with_config.violations == [] and with_config.not_applicable == []


def test_the_first_bootstrap_run_passes_too():
    """org-a before org-b exists (no association yet) is what the first `pulumi up` sees."""
    assert evaluate(bootstrap()["org-a-first"]).mandatory == []


def test_policy_pack_main_is_never_imported_by_tests():
    assert PolicyPack  # imported, never constructed here: construction starts a server and blocks
    assert all(p.name in BY_NAME for p in POLICIES)
    assert json.loads((POLICY_DIR / "config" / "org-b.json").read_text())
