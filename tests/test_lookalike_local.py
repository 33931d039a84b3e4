"""`audience generate --local`: the lookalike rehearsal on the shipped training data (scikit-learn), checked
against what the generator put in the data: each user leans to one genre, so a seed of one genre's fans has
look-alikes to find, and a random seed has none."""

from __future__ import annotations

import collections
import csv
import io
import json
import random
from pathlib import Path

import pytest

from queryrunner.cli import main
from tests.harness import ROOT

DATA = ROOT / "data" / "media_interactions" / "media_interactions.csv"


def favourites() -> dict[str, str]:
    counts = collections.defaultdict(collections.Counter)
    for row in csv.DictReader(DATA.open()):
        counts[row["customer_key"]][row["genre"]] += 1
    return {user: c.most_common(1)[0][0] for user, c in counts.items()}


def write_seed(path: Path, users: list[str]) -> str:
    path.write_text("".join(json.dumps({"user_id": u}) + "\n" for u in users))
    return str(path)


def rehearse(tmp_path, seed_file: str, *extra: str) -> tuple[int, str, str, dict]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["audience", "generate", "fans", "--local", "--seed-file", seed_file, "--out", str(tmp_path / "out"),
                 "--state-dir", str(tmp_path / "state"), *extra], stdout=out, stderr=err)
    records = sorted((tmp_path / "out" / "fans").glob("*.json"))
    return code, out.getvalue(), err.getvalue(), (json.loads(records[-1].read_text()) if records else {})


def segment(record: dict, label: str) -> list[str]:
    path = Path(record["segments"]) / f"segment-{label}.csv"
    return [line for line in path.read_text().splitlines()[1:]]


@pytest.fixture(scope="module")
def fans(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fans")
    liked = favourites()
    drama = sorted(u for u, g in liked.items() if g == "drama")
    seed = drama[:30]  # of 53 drama fans: the other 23 are the look-alikes to find
    code, out, err, record = rehearse(tmp, write_seed(tmp / "seed.jsonl", seed))
    assert code == 0, err
    return record, liked, set(seed), out


def test_a_genres_fans_find_the_other_fans(fans):
    record, liked, seed, _ = fans
    assert record["recall"] >= 0.6 > record["random_recall"] * 2  # far above chance (0.2)
    top = segment(record, "50")
    base_rate = sum(1 for u, g in liked.items() if g == "drama" and u not in seed) / (len(liked) - len(seed))
    precision = sum(liked[u] == "drama" for u in top) / len(top)
    assert precision > 2 * base_rate  # measured on the data, not on the model's own scores
    relevance = [s["relevance"] for s in record["sizes"]]
    assert relevance[0] > 0 and relevance == sorted(relevance, reverse=True)  # falls as the segment grows


def test_no_seed_user_is_in_any_segment_and_segments_nest(fans):
    record, _, seed, out = fans
    segments = [segment(record, s["size"]) for s in record["sizes"]]
    assert all(not (set(s) & seed) for s in segments)
    assert all(small == big[:len(small)] for small, big in zip(segments, segments[1:]))
    assert [len(s) for s in segments] == [50, 100, 200]
    assert "no seed user is in any segment" in out


def test_a_random_seed_finds_nothing_better_than_chance(tmp_path):
    users = sorted(favourites())
    chosen = random.Random(11).sample(users, 60)
    code, _, err, record = rehearse(tmp_path, write_seed(tmp_path / "seed.jsonl", chosen))
    assert code == 0, err
    assert record["recall"] < 0.5  # about chance: nothing sets these users apart


def test_the_same_random_seed_gives_the_same_segment(tmp_path):
    drama = sorted(u for u, g in favourites().items() if g == "drama")[:60]
    seed_file = write_seed(tmp_path / "seed.jsonl", drama)
    _, _, _, first = rehearse(tmp_path / "a", seed_file, "--seed", "4")
    _, _, _, second = rehearse(tmp_path / "b", seed_file, "--seed", "4")
    assert segment(first, "200") == segment(second, "200") and first["recall"] == second["recall"]


def test_the_report_shows_the_segment_sizes(fans, tmp_path):
    record, _, _, _ = fans
    page = (Path(record["segments"]).parents[1] / "report.html").read_text()
    assert 'data-audience="fans"' in page and "relevance by segment_size" in page
    assert page.count('class="bar"') >= sum(1 for s in record["sizes"] if s["relevance"] > 0)


@pytest.mark.parametrize("extra, expected", [
    (["--seed-template", "customer_segments"], "--seed-template is for AWS"),
    (["--include-seed"], "--include-seed is for AWS"),
    (["--timeout", "60"], "--timeout is for AWS"),
    (["--size", "75"], "--size 75 is not one of the audience sizes org-b's model offers (50, 100, 200)"),
])
def test_what_the_rehearsal_cannot_do_is_refused_by_name(tmp_path, extra, expected):
    drama = sorted(u for u, g in favourites().items() if g == "drama")[:60]
    code, out, err, _ = rehearse(tmp_path, write_seed(tmp_path / "seed.jsonl", drama), *extra)
    assert code == 2 and out == "" and expected in err and len(err.strip().splitlines()) == 1, err


def test_a_seed_too_small_or_without_a_training_dataset_is_refused(tmp_path):
    users = sorted(favourites())
    code, _, err, _ = rehearse(tmp_path, write_seed(tmp_path / "small.jsonl", users[:10]))
    assert code == 2 and "has 10 distinct user ids" in err
    out, err2 = io.StringIO(), io.StringIO()
    code = main(["audience", "generate", "fans", "--local", "--seed-file", str(tmp_path / "small.jsonl"),
                 "--stacks-dir", str(ROOT / "examples" / "three-orgs"), "--out", str(tmp_path / "x")],
                stdout=out, stderr=err2)
    assert code == 2 and "no stack file declares trainingData" in err2.getvalue()
