"""The project's bad-input sweep: every surface, one standard.

Each bad input, whatever it reaches (stack config, schema.yaml, a data file, an
analysis template, the query runner's flags and stack outputs, the local
runner, the data generator), is refused before anything is declared or sent,
in one line per problem that names the key, file, template or flag and what
would pass, with no traceback and no terminal escape codes.

The lists of the other surfaces live beside their tests and are counted here;
schema files, data files and template files are swept here.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from model.errors import ConfigError
from queryrunner import cli
from tests.harness import ROOT
from tests.test_config import settings_for
from tests.test_strict_config import BAD_CONFIG
from tests.test_validator import LEAKY

# (dataset, text edit of its schema.yaml as (old, new), what the error must say)
BAD_SCHEMA = [
    ("retail_purchases", ("columns:", "colums:"), "did you mean 'columns'"),
    ("retail_purchases", ("type: integer,", "type: int,"), "columns[4].type: got 'int' (integer)"),
    ("retail_purchases", ("type: varchar(64)", "type: string"), "got 'string' (text: varchar(n))"),
    ("retail_purchases", ('type: "decimal(10,2)"', "type: double"), "got 'double' (decimal(p,s) or float)"),
    ("retail_purchases", ('type: "decimal(10,2)"', 'type: "decimal(40,2)"'), "1 <= p <= 38"),
    ("retail_purchases", ("type: varchar(64)", "type: varchar(0)"), "the length must be 1-65535"),
    ("retail_purchases", ("type: varchar(64)", "type: array<string>"), "Clean Rooms documents these column types"),
    ("retail_purchases", ("role: join_key}", "rol: join_key}"), "did you mean 'role'"),
    ("retail_purchases", ("role: dimension,", "role: label,"), "columns[1].role: got 'label'"),
    ("retail_purchases", ("name: retail_purchases\n", "name: retail\n"), "must be the folder's name"),
    ("retail_purchases", ("{name: region", "{name: Region"), "'Region' must be lowercase"),
    ("retail_purchases", ("file: retail_purchases.csv", "file: ../x.csv"), "must be a file name beside"),
    ("retail_purchases", ("file: retail_purchases.csv", "file: retail_purchases.json"), "'.parquet'"),
    ("retail_purchases", ("{name: region, type: varchar", "{name: age_group, type: varchar"), "duplicate columns"),
    ("media_engagement", ("description:", "descripton:"), "did you mean 'description'"),
    ("media_engagement", ("columns:\n", "columns: []\nunused:\n"), "unknown key 'unused'"),
    ("media_engagement", ("- {name: sessions", "- {nme: sessions"), "did you mean 'name'"),
]

# (dataset, line number to replace (1 = header), new line or None to keep, what the error must say)
BAD_DATA = [
    ("retail_purchases", 1, "customer_key,age_group,regoin,product_category,order_count,purchase_amount",
     "header"),
    ("retail_purchases", 6, "k6,35-44,west,home,many,12.5", "line 6: column 'order_count' value 'many'"),
    ("retail_purchases", 7, "k7,35-44,west,home,3", "line 7: 5 fields, expected 6"),
    ("retail_purchases", 8, "k8,35-44,west,home,3,1.0,extra", "line 8: 7 fields, expected 6"),
    ("retail_purchases", 9, ",35-44,west,home,3,1.0", "column 'customer_key' (join_key) is empty"),
    ("media_engagement", 5, "k5,18-24,south,web,3,high", "column 'engagement_score' value 'high'"),
    ("media_engagement", 5, "k5,18-24,south,web,99999999999,1.0", "column 'sessions' value '99999999999'"),
    ("media_engagement", 5, "k5,18-24,south,web,3,123456.5", "column 'engagement_score' value '123456.5'"),
    ("media_engagement", 5, "k5,18-24,south,a_very_long_channel_name,3,1.0",
     "column 'channel' is longer than its type varchar(16)"),
]

# (file name, content, what the error must say): templates that cannot even be read
BAD_TEMPLATE_FILES = [
    ("Bad-Name.sql", "SELECT 1 AS x", "must be lowercase letters, digits, '_'"),
    ("p_type.sql", "-- param: n NUMBERISH\nSELECT :n AS x", "has type NUMBERISH"),
    ("p_default.sql", "-- param: n INTEGER default many\nSELECT :n AS x", "default 'many'"),
    ("p_twice.sql", "-- param: n INTEGER\n-- param: n INTEGER\nSELECT :n AS x", "declared twice"),
    ("p_unused.sql", "-- param: n INTEGER\nSELECT 1 AS x", "differ from those declared"),
    ("p_undeclared.sql", "SELECT :n AS x", "differ from those declared"),
    ("p_line.sql", "-- param: n\nSELECT 1 AS x", "cannot read"),
    ("syntax.sql", "SELECT region,\n COUNT(* AS n FROM retail_purchases", "syntax.sql:3: SQL does not parse"),
]


def _data_copy(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data", data)
    return data


def _refused(data: Path) -> str:
    with pytest.raises(ConfigError) as info:
        settings_for("org-a", data_dir=data)
    return str(info.value)


def _one_standard(message: str) -> None:
    assert "Traceback" not in message and "\x1b" not in message
    for line in message.splitlines():
        assert line.startswith("config '") or line.startswith("data/") or line.startswith("/"), line


@pytest.mark.parametrize("dataset, edit, fragment", BAD_SCHEMA, ids=[c[2][:30] for c in BAD_SCHEMA])
def test_bad_schema_file(tmp_path, dataset, edit, fragment):
    data = _data_copy(tmp_path)
    schema = data / dataset / "schema.yaml"
    text = schema.read_text()
    assert edit[0] in text, edit
    schema.write_text(text.replace(edit[0], edit[1], 1))
    message = _refused(data)
    assert str(schema) in message and fragment in message, message
    _one_standard(message)


@pytest.mark.parametrize("dataset, line, content, fragment", BAD_DATA, ids=[c[3][:30] for c in BAD_DATA])
def test_bad_data_file(tmp_path, dataset, line, content, fragment):
    data = _data_copy(tmp_path)
    path = data / dataset / f"{dataset}.csv"
    lines = path.read_text().splitlines()
    lines[line - 1] = content
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        settings_for("org-a" if dataset == "retail_purchases" else "org-b", data_dir=data)
    message = str(info.value)
    assert f"{dataset}.csv" in message and fragment in message, message
    _one_standard(message)


@pytest.mark.parametrize("name, sql, fragment", BAD_TEMPLATE_FILES, ids=[c[0] for c in BAD_TEMPLATE_FILES])
def test_bad_template_file(tmp_path, name, sql, fragment):
    data = _data_copy(tmp_path)
    (data / "queries" / name).write_text(f"-- description: x\n{sql}\n")
    message = _refused(data)
    assert name.removesuffix(".sql") in message and fragment in message, message
    _one_standard(message)


def test_the_local_runner_refuses_the_same_bad_data_in_one_line(tmp_path):
    data = _data_copy(tmp_path)
    schema = data / "retail_purchases" / "schema.yaml"
    schema.write_text(schema.read_text().replace("columns:", "colums:"))
    stderr = io.StringIO()
    code = cli.main(["run", "--all", "--local", "--data-dir", str(data), "--state-dir", str(tmp_path / "s"),
                     "--out", str(tmp_path / "o")], stdout=io.StringIO(), stderr=stderr)
    assert code == 2 and stderr.getvalue().count("\n") == 1 and "did you mean 'columns'" in stderr.getvalue()


def test_the_sweep_covers_at_least_a_hundred_bad_inputs():
    from tests.test_localroom_cli import BAD_LOCAL_CLI

    counts = {"stack config": len(BAD_CONFIG), "schema.yaml": len(BAD_SCHEMA), "data files": len(BAD_DATA),
              "template files": len(BAD_TEMPLATE_FILES), "leaky templates": len(LEAKY),
              "local runner": len(BAD_LOCAL_CLI)}
    for surface, module in (("query runner", "tests.test_queryrunner_inputs"),
                            ("data generator", "tests.test_generate_data")):
        counts[surface] = len(__import__(module, fromlist=["BAD_INPUTS"]).BAD_INPUTS)
    assert sum(counts.values()) >= 100, counts
    assert all(counts.values()), counts
