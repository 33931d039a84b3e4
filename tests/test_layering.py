"""The layers the README describes: model/ is pure, the local path stays off the cloud SDKs."""

from __future__ import annotations

import subprocess
import sys

from tests.harness import ROOT

CLOUD_SDKS = ("pulumi", "pulumi_aws", "pulumi_aws_native", "boto3", "botocore")


def imported_after(code: str) -> set[str]:
    """Top-level modules a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport sys\nprint('\\n'.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_model_imports_no_cloud_sdk():
    loaded = imported_after("import pkgutil, importlib, model\n"
                            "[importlib.import_module(f'model.{m.name}') for m in pkgutil.iter_modules(model.__path__)]")
    assert "model" in loaded
    assert not loaded & set(CLOUD_SDKS), sorted(loaded & set(CLOUD_SDKS))
