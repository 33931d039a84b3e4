"""The custom model's container code (models/purchase_propensity), run in the Clean Rooms ML container layout
on this machine (no Docker): training reads SM_CHANNEL_TRAIN and writes SM_MODEL_DIR and SM_OUTPUT_DIR,
inference answers /ping and /invocations with one newline-terminated score per input line."""

from __future__ import annotations

import csv
import http.client
import io
import json
import random
import re
import subprocess
import sys
import threading
from http.server import HTTPServer
from pathlib import Path

import pytest

from tests.harness import ROOT

MODEL = ROOT / "models" / "purchase_propensity"
sys.path.insert(0, str(MODEL))
import rehearse  # noqa: E402  (models/purchase_propensity/rehearse.py: the channel's rows, the layout)
METRIC = re.compile(r"validation:accuracy=([0-9.]+)")  # the training container's metric definition
COLUMNS = ["sessions", "engagement_score", "age_group", "region", "channel", "frequent_buyer"]


def layout(tmp_path: Path, rows: list[dict]) -> dict[str, str]:
    """/opt/ml as Clean Rooms ML lays it out, under tmp_path; the environment the container gets."""
    channel = tmp_path / "opt" / "ml" / "input" / "data" / "train"
    channel.mkdir(parents=True)
    with (channel / "part-00000.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return {"SM_MODEL_DIR": str(tmp_path / "opt/ml/model"), "SM_OUTPUT_DIR": str(tmp_path / "opt/ml/output/data"),
            "SM_CHANNEL_TRAIN": str(channel), "FILE_FORMAT": "CSV"}


def train(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(MODEL / "train.py")], env={**env, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120, cwd=MODEL)


def shipped_rows() -> list[dict]:
    """What the ML input channel's query gives (models/purchase_propensity/channel.sql) on the shipped data."""
    columns, rows = rehearse.channel_rows(ROOT / "data")
    assert columns == COLUMNS
    return [dict(zip(columns, row)) for row in rows]


def planted_rows(n: int = 1200) -> list[dict]:
    """Rows where the label follows sessions (10% flipped): a model that learns anything learns this."""
    rng = random.Random(3)
    rows = []
    for _ in range(n):
        sessions = rng.randint(1, 200)
        label = int(sessions > 100) ^ int(rng.random() < 0.1)
        rows.append({"sessions": sessions, "engagement_score": round(rng.uniform(0, 100), 2),
                     "age_group": rng.choice(["18-24", "25-34", "35-44"]), "region": rng.choice(["west", "south"]),
                     "channel": rng.choice(["web", "email"]), "frequent_buyer": label})
    return rows


def test_training_follows_the_container_contract_on_the_shipped_join(tmp_path):
    env = layout(tmp_path, shipped_rows())
    done = train(env)
    assert done.returncode == 0, done.stderr
    assert (Path(env["SM_MODEL_DIR"]) / "model.joblib").is_file()
    metrics = json.loads((Path(env["SM_OUTPUT_DIR"]) / "metrics.json").read_text())
    assert metrics["rows"] == 1800  # the datasets' overlap
    assert float(METRIC.search(done.stdout).group(1)) == pytest.approx(metrics["accuracy"], abs=1e-4)
    # The shipped data has no link between engagement and orders: the model does not beat the majority.
    assert metrics["accuracy"] <= metrics["majority_baseline"] + 0.05


def test_the_model_learns_a_planted_signal(tmp_path):
    env = layout(tmp_path, planted_rows())
    assert train(env).returncode == 0
    metrics = json.loads((Path(env["SM_OUTPUT_DIR"]) / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.85 > metrics["majority_baseline"] + 0.2
    assert metrics["auc"] >= 0.85  # 10% of the labels flipped caps it below 1


def test_a_channel_without_the_label_is_one_line(tmp_path):
    env = layout(tmp_path, [{k: v for k, v in row.items()} for row in planted_rows(50)])
    path = Path(env["SM_CHANNEL_TRAIN"]) / "part-00000.csv"
    path.write_text(path.read_text().replace("frequent_buyer", "label"))
    done = train(env)
    assert done.returncode != 0 and "has no 'frequent_buyer' column" in done.stderr


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("served")
    env = layout(tmp, planted_rows())
    assert train(env).returncode == 0
    sys.path.insert(0, str(MODEL))
    try:
        import serve
    finally:
        sys.path.remove(str(MODEL))
    serve.Handler.model = serve.load(Path(env["SM_MODEL_DIR"]))
    server = HTTPServer(("127.0.0.1", 0), serve.Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield serve, server.server_address[1]
    server.shutdown()


def _post(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", path, body=body, headers={"Content-Type": "text/csv"})
    response = connection.getresponse()
    return response.status, response.read()


def test_inference_scores_each_line_and_ends_each_record_with_a_newline(served):
    serve, port = served
    rows = planted_rows(5)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS[:-1], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/ping")
    assert connection.getresponse().status == 200
    status, body = _post(port, "/invocations", buffer.getvalue().encode())
    assert status == 200 and body.endswith(b"\n")
    scores = [float(line) for line in body.decode().splitlines()]
    assert len(scores) == 5 and all(0 <= s <= 1 for s in scores)
    # High sessions, high score: the served model is the trained one.
    assert (scores[0] > 0.5) == (rows[0]["sessions"] > 100)


def test_inference_refuses_rows_without_the_features(served):
    _, port = served
    status, body = _post(port, "/invocations", b"sessions,region\n5,west\n")
    assert status == 400 and b"lacks columns" in body


def test_the_rehearsal_runs_the_channel_query_and_trains_in_the_layout(tmp_path):
    done = subprocess.run([sys.executable, str(MODEL / "rehearse.py"), "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=180, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "channel: 1800 rows (sessions, engagement_score, age_group, region, channel, frequent_buyer)" in done.stderr
    assert METRIC.search(done.stdout)
    assert (tmp_path / "opt/ml/model/model.joblib").is_file()
    broken = tmp_path / "data"
    import shutil

    shutil.copytree(ROOT / "data", broken)
    path = broken / "retail_purchases" / "retail_purchases.csv"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 2)[0] + ",1.5,12.30"
    path.write_text("\n".join(lines) + "\n")
    refused = subprocess.run([sys.executable, str(MODEL / "rehearse.py"), "--data-dir", str(broken)],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "line 4: column 'order_count' value '1.5'" in refused.stderr
    assert "Traceback" not in refused.stderr
