"""localroom/preload.py: `run --local` reads the data while it checks the templates, and that changes no outcome."""

from __future__ import annotations

import shutil
import threading

from tests.harness import ROOT
from tests.test_localroom_cli import Runner
from tests.test_validator import LEAKY, write_template


def test_the_data_is_read_while_the_templates_are_checked(tmp_path, monkeypatch):
    """The check of the first template waits until a data file is being read: a load that only began
    after the checks (or no load at all) fails this test by timing out."""
    from localroom import cache
    import model.validator

    reading, real_load, real_validate = threading.Event(), cache.load_into, model.validator.validate

    def load_into(*args, **kwargs):
        reading.set()
        return real_load(*args, **kwargs)

    def validate(*args, **kwargs):
        assert reading.wait(timeout=20), "no data file was being read while the templates were checked"
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(cache, "load_into", load_into)
    monkeypatch.setattr(model.validator, "validate", validate)
    local = Runner(tmp_path)
    code, _, err = local("run", "--all", "--seed", "3")
    assert code == 0, err
    assert local.results("customer_segments") and local.results("channel_reach")


def test_a_refused_template_is_reported_before_a_bad_data_file_and_nothing_runs(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data", data)
    path = data / "media_engagement" / "media_engagement.csv"
    lines = path.read_text().splitlines()
    fields = lines[6].split(",")
    fields[4] = "lots"  # sessions is an int: the load fails, in the background
    lines[6] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    write_template(data / "queries", "leaky", LEAKY["dp_max"][0])
    local = Runner(tmp_path)
    code, _, err = local("run", "leaky", "--data-dir", str(data))
    assert code == 2 and "Clean Rooms would refuse these templates" in err and "Traceback" not in err
    assert "does not match its schema" not in err  # as without the early load: the refusal alone
    assert not local.out.exists() and local.ledger()["charges"] == []
    # The same bad file with templates that pass: the data error, one line naming file, line and column.
    code, _, err = local("run", "customer_segments", "--data-dir", str(data))
    assert code == 2 and "media_engagement.csv does not match its schema: line 7: column 'sessions'" in err
    assert not local.out.exists() and local.ledger()["charges"] == []


def test_spark_runs_do_not_preload(tmp_path, monkeypatch):
    """The early load is DuckDB's: an --engine spark run reads its tables on Spark only."""
    from queryrunner import local as local_module

    seen = []
    monkeypatch.setattr(local_module.LocalApp, "_prepare", lambda self, jobs, earlier, out, preload: (
        seen.append(preload), (None, None, None))[1])
    Runner(tmp_path)("run", "--all", "--engine", "spark")
    assert seen in ([None], [])  # [] where PySpark is absent and the run is refused before
