"""Clean Rooms ML training data (issue 17, item 2, the training-data provider's part): org B's interactions,
registered as an AWS::CleanRoomsML::TrainingDataset from the dataset's mlType columns."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter

import pulumi
import pytest

from model import training
from model.datasets import load_dataset
from scripts import generate_data
from tests.harness import ROOT, run_stack
from tests.support.cfn_schema import validate_native
from tests.support.iam_lint import lint_policy

B = "222222222222"
ML = "aws-native:cleanroomsml:TrainingDataset"


def test_org_b_registers_its_interactions_as_training_data(bootstrap):
    run = bootstrap.b2
    dataset = run.one(ML)
    assert validate_native(dataset.typ, dataset.inputs) == []
    config = dataset.inputs["trainingData"][0]
    assert config["type"] == "INTERACTIONS"
    assert [(c["columnName"], c["columnTypes"]) for c in config["inputConfig"]["schema"]] == [
        ("customer_key", ["USER_ID"]), ("item_id", ["ITEM_ID"]), ("event_time", ["TIMESTAMP"]),
        ("genre", ["CATEGORICAL_FEATURE"]), ("watch_minutes", ["NUMERICAL_FEATURE"])]
    glue = config["inputConfig"]["dataSource"]["glueDataSource"]
    table = run.named("org-b-training-table")
    assert (glue["databaseName"], glue["tableName"], glue["catalogId"]) == (
        "org_b_media_interactions", "media_interactions", B)
    # The schema aligns with the Glue table's ("must align", ml-training-data-requirements).
    glue_columns = {c["name"]: c["type"] for c in table.input("storageDescriptor.columns")}
    assert glue_columns == {"customer_key": "varchar(64)", "item_id": "varchar(16)", "event_time": "bigint",
                            "genre": "varchar(16)", "watch_minutes": "int"}
    assert run.named("org-b-training-data-bucket").protect
    assert {"name", "roleArn", "trainingData[*]"} <= set(dataset.replace_on_changes)  # every property create-only
    assert run.outputs["training_dataset_arn"].startswith(f"arn:aws:cleanrooms-ml:us-east-1:{B}:training-dataset/")


def test_clean_rooms_ml_reads_it_through_a_role_of_its_own(bootstrap):
    run = bootstrap.b2
    role = run.named("org-b-training-read")
    trust = json.loads(role.inputs["assumeRolePolicy"])
    [statement] = trust["Statement"]
    assert statement["Principal"] == {"Service": "cleanrooms-ml.amazonaws.com"}
    assert statement["Sid"] == "CleanRoomsMLForThisAccount" and statement["Condition"] == {
        "StringEqualsIfExists": {"aws:SourceAccount": [B]},
        "ArnLikeIfExists": {"aws:SourceArn": f"arn:aws:cleanrooms-ml:us-east-1:{B}:training-dataset/*"}}
    assert lint_policy(trust, kind="trust") == []
    policy = json.loads(run.named("org-b-training-read-policy").inputs["policy"])
    assert lint_policy(policy) == []
    objects = next(s for s in policy["Statement"] if s["Sid"] == "ReadThisPrefix")
    assert objects["Resource"] == [f"arn:aws:s3:::org-b-cleanrooms-training-{B}/training/media_interactions/*"]
    assert run.one(ML).inputs["roleArn"] == role.state["arn"]


def test_the_preview_says_the_sample_is_too_small_to_train_on(bootstrap):
    [warning] = [line for line in bootstrap.b2.logs if "training data media_interactions" in line]
    assert "4,533 records, 400 users with at least 2 interactions" in warning
    assert "100,000" in warning and training.REQUIREMENTS in warning


def test_the_size_is_measured_from_the_file(tmp_path, monkeypatch):
    spec = training.TrainingSpec(load_dataset("media_interactions"), "")
    rows = list(csv.DictReader((ROOT / "data" / "media_interactions" / "media_interactions.csv").open()))
    counts = Counter(r["customer_key"] for r in rows)
    assert training.training_size(spec.dataset.data_path, "customer_key") == (
        len(rows), sum(1 for n in counts.values() if n >= 2))
    monkeypatch.setattr(training, "MIN_USERS", 400)
    monkeypatch.setattr(training, "MIN_RECORDS", 4533)
    assert training.size_warning(spec) is None  # at the minimums: nothing to say


def _schema_with(tmp_path, replace: tuple[str, str]):
    data = tmp_path / "data"
    shutil.copytree(ROOT / "data", data)
    path = data / "media_interactions" / "schema.yaml"
    path.write_text(path.read_text().replace(*replace))
    return data


@pytest.mark.parametrize("replace, fragment", [
    (("role: dimension, mlType: ITEM_ID", "role: dimension"), "needs exactly one column with mlType ITEM_ID"),
    (("role: dimension, values: [\"news\", \"sports\", \"drama\", \"comedy\", \"documentary\", \"kids\"], mlType: "
      "CATEGORICAL_FEATURE", "role: dimension, values: [\"news\", \"sports\", \"drama\", \"comedy\", \"documentary\", "
      "\"kids\"], mlType: ITEM_ID"), "found ['item_id', 'genre']"),
    (("{name: event_time, type: bigint,", "{name: event_time, type: \"decimal(12,0)\","),
     "column 'event_time' (mlType TIMESTAMP) is decimal(12,0); TIMESTAMP takes integer, bigint"),
    (("role: join_key, mlType: USER_ID", "role: join_key, mlType: USER_KEY"), "mlType"),
])
def test_a_training_schema_clean_rooms_ml_would_refuse_is_one_line(tmp_path, replace, fragment):
    data = _schema_with(tmp_path, replace)
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-b", overrides={"dataDir": str(data)})
    message = str(info.value)
    assert "\n" not in message and fragment in message, message
    assert "media_interactions" in message


def test_the_user_id_must_be_the_join_key(tmp_path):
    data = _schema_with(tmp_path, ("role: join_key, mlType: USER_ID", "role: user_identifier, mlType: USER_ID"))
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-b", overrides={"dataDir": str(data)})
    assert "the USER_ID column 'customer_key' must be the join key" in str(info.value)


def test_an_unknown_training_dataset_names_what_exists():
    with pytest.raises(pulumi.RunError) as info:
        run_stack("org-b", overrides={"trainingData": {"dataset": "media_clicks"}})
    assert "no schema file for dataset 'media_clicks'" in str(info.value) and "media_interactions" in str(info.value)


def test_the_generator_makes_each_user_interact_two_to_twenty_times(tmp_path):
    generate_data.generate(300, 250, 100, 3, tmp_path, interactions_users=120)
    rows = list(csv.DictReader((tmp_path / "media_interactions" / "media_interactions.csv").open()))
    counts = Counter(r["customer_key"] for r in rows)
    media = {r["customer_key"] for r in csv.DictReader((tmp_path / "media_engagement" / "media_engagement.csv").open())}
    assert len(counts) == 120 and set(counts) <= media and all(2 <= n <= 20 for n in counts.values())
    end = generate_data.INTERACTIONS_END
    assert all(end - 90 * 86400 <= int(r["event_time"]) <= end for r in rows)  # epoch seconds, in the bounds


@pytest.mark.parametrize("argv, expected", [
    (["--interactions-users", "3000"], "--interactions-users must be a whole number between 0 and --b-rows = 2500"),
    (["--b-rows", "10", "--overlap", "5", "--interactions-users", "-1"], "--interactions-users must be a whole number"),
])
def test_the_generators_interaction_flag_is_checked(argv, expected, tmp_path, capsys):
    assert generate_data.main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().startswith(f"error: {expected}")
    assert not (tmp_path / "out").exists()


def test_without_the_flag_small_data_gets_all_of_org_bs_customers(tmp_path, capsys):
    assert generate_data.main(["--a-rows", "10", "--b-rows", "8", "--overlap", "4", "--out", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["media_interactions_users"] == 8
