"""The sample datasets: deterministic, valid against their schemas, with a known overlap."""

from __future__ import annotations

import csv
import json
import sys

from model.datasets import load_dataset, validate_data
from tests.harness import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import generate_data  # noqa: E402


def keys(path) -> set[str]:
    with open(path, newline="") as handle:
        return {row["customer_key"] for row in csv.DictReader(handle)}


def test_committed_data_is_what_the_generator_makes(tmp_path):
    summary = generate_data.generate(3000, 2500, 1800, 20261125, tmp_path, interactions_users=400)
    for name in ("retail_purchases", "media_engagement", "media_interactions"):
        for file in (f"{name}.csv", "schema.yaml"):
            assert (tmp_path / name / file).read_bytes() == (ROOT / "data" / name / file).read_bytes(), file
    assert summary == json.loads((ROOT / "data" / "generated.json").read_text())
    assert (tmp_path / "generated.json").read_bytes() == (ROOT / "data" / "generated.json").read_bytes()


def test_generator_defaults_are_the_committed_data():
    defaults = generate_data._parser().parse_args([])
    assert [int(defaults.a_rows), int(defaults.b_rows), int(defaults.overlap), int(defaults.seed)] == \
        [3000, 2500, 1800, 20261125]
    # Not given: 400 users of org B's (or all of them when --b-rows is smaller).
    assert defaults.interactions_users is None and generate_data.DEFAULTS["interactions_users"] == 400
    assert defaults.format == "csv"


def test_datasets_share_exactly_the_declared_overlap(tmp_path):
    generate_data.generate(500, 400, 123, 7, tmp_path)
    a = keys(tmp_path / "retail_purchases" / "retail_purchases.csv")
    b = keys(tmp_path / "media_engagement" / "media_engagement.csv")
    assert (len(a), len(b), len(a & b)) == (500, 400, 123)


def test_shipped_datasets_match_their_schemas():
    assert validate_data(load_dataset("retail_purchases")) == 3000
    assert validate_data(load_dataset("media_engagement")) == 2500


def test_join_key_is_a_salted_hash_not_an_email():
    key = generate_data.customer_key(42)
    assert len(key) == 64 and "@" not in key
    assert key != generate_data.customer_key(42, salt="another-salt")
