"""scripts/generate_data.py: inputs refused by name, schema.yaml, Parquet, the fast path."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml

from model.datasets import load_dataset, validate_data
from tests.harness import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import generate_data  # noqa: E402

NAMES = ("retail_purchases", "media_engagement")
SCRIPT = ROOT / "scripts" / "generate_data.py"

# (argv, what the one-line error must name). "{tmp}" is the test's tmp_path,
# prepared by _prepare: "a-file" is a file, "taken/retail_purchases" a file
# where the generator needs a folder. Without --out, --out is {tmp}/out.
BAD_INPUTS = [
    pytest.param(["--a-rows", "0"], "--a-rows", id="a-rows-zero"),
    pytest.param(["--a-rows", "-5"], "--a-rows", id="a-rows-negative"),
    pytest.param(["--a-rows", "1.5"], "--a-rows", id="a-rows-fraction"),
    pytest.param(["--a-rows", "many"], "--a-rows", id="a-rows-text"),
    pytest.param(["--a-rows"], "--a-rows", id="a-rows-no-value"),
    pytest.param(["--b-rows", "0"], "--b-rows", id="b-rows-zero"),
    pytest.param(["--b-rows=-1"], "--b-rows", id="b-rows-negative"),
    pytest.param(["--b-rows", ""], "--b-rows", id="b-rows-empty"),
    pytest.param(["--b-rows", "1e3"], "--b-rows", id="b-rows-exponent"),
    pytest.param(["--overlap", "-1"], "--overlap", id="overlap-negative"),
    pytest.param(["--overlap", "2501"], "--overlap", id="overlap-above-b-rows"),
    pytest.param(["--a-rows", "10", "--b-rows", "20", "--overlap", "11"], "--overlap", id="overlap-above-a-rows"),
    pytest.param(["--overlap", "half"], "--overlap", id="overlap-text"),
    pytest.param(["--seed", "-1"], "--seed", id="seed-negative"),
    pytest.param(["--seed", "0x10"], "--seed", id="seed-hex"),
    pytest.param(["--format", "json"], "--format", id="format-unknown"),
    pytest.param(["--format", "CSV"], "--format", id="format-case"),
    pytest.param(["--out", "{tmp}/a-file"], "--out", id="out-is-a-file"),
    pytest.param(["--out", "{tmp}/a-file/data"], "--out", id="out-parent-is-a-file"),
    pytest.param(["--out", "{tmp}/a-file/deeper/data"], "--out", id="out-ancestor-is-a-file"),
    pytest.param(["--out", "{tmp}/taken"], "--out", id="out-dataset-folder-is-a-file"),
    pytest.param(["--out", ""], "--out", id="out-empty"),
    pytest.param(["--rows", "10"], "--rows", id="unknown-flag"),
    pytest.param(["--over", "10"], "--over", id="abbreviated-flag"),
    pytest.param(["positional"], "positional", id="positional-argument"),
]


def _prepare(tmp_path) -> None:
    (tmp_path / "a-file").write_text("not a folder\n")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "retail_purchases").write_text("not a folder either\n")


def _argv(argv: list[str], tmp_path) -> list[str]:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    return argv if "--out" in argv else [*argv, "--out", str(tmp_path / "out")]


def _tree(folder) -> dict:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else "dir") for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize(("argv", "flag"), BAD_INPUTS)
def test_bad_input_is_refused_by_name_and_writes_nothing(argv, flag, tmp_path, capsys):
    _prepare(tmp_path)
    before = _tree(tmp_path)
    code = generate_data.main(_argv(argv, tmp_path))
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and flag in lines[0], lines[0]
    assert _tree(tmp_path) == before


@pytest.mark.parametrize(("argv", "flag"), [p for p in BAD_INPUTS if p.id in
                                            ("a-rows-negative", "out-is-a-file", "unknown-flag", "a-rows-no-value")])
def test_bad_input_from_the_command_line(argv, flag, tmp_path):
    _prepare(tmp_path)
    before = _tree(tmp_path)
    proc = subprocess.run([sys.executable, str(SCRIPT), *_argv(argv, tmp_path)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and flag in lines[0], proc.stderr
    assert _tree(tmp_path) == before


def test_negative_rows_are_blamed_on_the_rows_flag(capsys, tmp_path):
    assert generate_data.main(["--a-rows", "-5", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("error: --a-rows must be a whole number >= 1")


def test_smallest_datasets_are_written_and_valid(tmp_path, capsys):
    assert generate_data.main(["--a-rows", "1", "--b-rows", "1", "--overlap", "1", "--seed", "0",
                               "--out", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["overlapping_customers"] == 1
    for name in NAMES:
        assert validate_data(load_dataset(name, tmp_path)) == 1


@pytest.mark.parametrize("data_format", generate_data.FORMATS)
def test_schema_yaml_declares_what_is_written(tmp_path, data_format):
    generate_data.generate(40, 30, 10, 3, tmp_path, data_format)
    for schema in generate_data.SCHEMAS:
        folder = tmp_path / schema.name
        text = (folder / "schema.yaml").read_text()
        assert text == schema.text(data_format)
        declared = yaml.safe_load(text)
        assert declared["file"] == f"{schema.name}.{data_format}"
        assert (folder / declared["file"]).is_file()
        names = [c["name"] for c in declared["columns"]]
        if data_format == "csv":
            with (folder / declared["file"]).open(newline="") as handle:
                assert next(csv.reader(handle)) == names
        else:
            assert pq.read_schema(folder / declared["file"]).names == names
        assert load_dataset(schema.name, tmp_path).column_names == names


def test_parquet_has_typed_columns_and_the_loader_accepts_it(tmp_path):
    summary = generate_data.generate(500, 400, 123, 7, tmp_path, "parquet")
    assert summary == {"seed": 7, "retail_purchases_rows": 500, "media_engagement_rows": 400,
                       "overlapping_customers": 123}
    types = {"varchar(64)": pa.string(), "varchar(8)": pa.string(), "varchar(16)": pa.string(),
             "integer": pa.int32(), "decimal(10,2)": pa.decimal128(10, 2), "decimal(5,2)": pa.decimal128(5, 2)}
    for name, rows in (("retail_purchases", 500), ("media_engagement", 400)):
        dataset = load_dataset(name, tmp_path)
        assert dataset.file == f"{name}.parquet" and dataset.format == "parquet"
        assert validate_data(dataset) == rows
        schema = pq.read_schema(dataset.data_path)
        assert [(f.name, f.type) for f in schema] == [(c.name, types[c.type]) for c in dataset.columns]
        assert not (tmp_path / name / f"{name}.csv").exists()


def test_csv_and_parquet_hold_the_same_rows(tmp_path):
    generate_data.generate(700, 600, 250, 11, tmp_path / "csv")
    generate_data.generate(700, 600, 250, 11, tmp_path / "parquet", "parquet")
    for name in NAMES:
        from_parquet = pq.read_table(tmp_path / "parquet" / name / f"{name}.parquet")
        from_csv = pacsv.read_csv(tmp_path / "csv" / name / f"{name}.csv",
                                  convert_options=pacsv.ConvertOptions(column_types=from_parquet.schema))
        assert from_csv.num_rows == from_parquet.num_rows
        assert from_csv.equals(from_parquet)  # same rows, same order, same values and types


def _reference_csv(a_rows: int, b_rows: int, overlap: int, seed: int) -> dict[str, bytes]:
    """The datasets as the original generator wrote them: the row definitions through csv.DictWriter."""
    made = {}
    for schema, rows in ((generate_data.RETAIL, generate_data.retail_rows(a_rows, seed)),
                         (generate_data.MEDIA, generate_data.engagement_rows(a_rows, b_rows, overlap, seed))):
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=schema.header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        made[schema.name] = buffer.getvalue().encode("utf-8")
    return made


@pytest.mark.parametrize(("a_rows", "b_rows", "overlap", "seed"), [
    (300, 200, 0, 0), (200, 300, 200, 1), (257, 257, 257, 99), (1, 1, 0, 5), (1, 1, 1, 123456789), (1200, 90, 45, 42),
])
def test_fast_path_writes_what_the_row_definitions_say(tmp_path, a_rows, b_rows, overlap, seed):
    generate_data.generate(a_rows, b_rows, overlap, seed, tmp_path, chunk_rows=97)
    for name, expected in _reference_csv(a_rows, b_rows, overlap, seed).items():
        assert (tmp_path / name / f"{name}.csv").read_bytes() == expected


def test_worker_processes_write_the_same_bytes(tmp_path):
    generate_data.generate(3000, 2500, 1800, 20261125, tmp_path / "csv", workers=2, chunk_rows=700)
    generate_data.generate(3000, 2500, 1800, 20261125, tmp_path / "parquet", "parquet", workers=2, chunk_rows=700)
    generate_data.generate(3000, 2500, 1800, 20261125, tmp_path / "serial", "parquet", workers=1)
    for name in NAMES:
        for file in (f"{name}.csv", "schema.yaml"):
            assert (tmp_path / "csv" / name / file).read_bytes() == (ROOT / "data" / name / file).read_bytes()
        assert pq.read_table(tmp_path / "parquet" / name / f"{name}.parquet").equals(
            pq.read_table(tmp_path / "serial" / name / f"{name}.parquet"))


def test_a_failed_run_replaces_nothing(tmp_path, monkeypatch):
    generate_data.generate(300, 200, 100, 1, tmp_path)
    before = _tree(tmp_path)
    real, calls = generate_data._chunk, []

    def failing(*args):
        calls.append(args)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(*args)

    monkeypatch.setattr(generate_data, "_chunk", failing)
    with pytest.raises(OSError):
        generate_data.generate(900, 800, 100, 2, tmp_path, chunk_rows=100)
    assert _tree(tmp_path) == before  # old files intact, no partial files left behind


def test_switching_format_notes_the_file_left_behind(tmp_path, capsys):
    assert generate_data.main(["--a-rows", "5", "--b-rows", "5", "--overlap", "2", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert generate_data.main(["--a-rows", "5", "--b-rows", "5", "--overlap", "2", "--format", "parquet",
                               "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("note: ") and ".csv was left as it was" in line for line in err)
    for name in NAMES:
        assert validate_data(load_dataset(name, tmp_path)) == 5
