"""results/report.html opened from disk in a real headless Chromium: the chart is drawn.

Chromium comes from Debian (scripts/test installs it). Without it the test is
skipped, unless REQUIRE_BROWSER=1 (set by scripts/test), where it fails.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from localroom.report import PALETTE
from queryrunner import cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Without these, Chromium tries the network at start-up; this machine has none (docs: env, python.md).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1100,900"]

pytestmark = pytest.mark.skipif(CHROMIUM is None and os.environ.get("REQUIRE_BROWSER") != "1",
                                reason="chromium is not installed (bash scripts/test installs it)")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    assert CHROMIUM, "REQUIRE_BROWSER=1 but chromium is not on PATH"
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120, check=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    code = cli.main(["run", "customer_segments", "--local", "--seed", "5", "--out", str(tmp / "results"),
                     "--state-dir", str(tmp / "state")], stdout=io.StringIO(), stderr=io.StringIO())
    assert code == 0
    return tmp / "results" / "report.html"


def test_report_is_self_contained(report):
    page = report.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the report must not load anything"
    assert "<svg" in page and "customer_count by age_group, coloured by region" in page


def test_chart_renders_in_chromium(report, tmp_path):
    dom = chromium(tmp_path, "--dump-dom", report.as_uri()).stdout
    drawn = int(re.search(r'data-bars-rendered="(\d+)"', dom).group(1))
    bars = report.read_text().count('class="bar"')
    assert drawn == bars == 24  # 6 age groups x 4 regions, every one laid out with a size
    # each noisy count's 95% interval, drawn as an error bar over its bar
    errors = int(re.search(r'data-errorbars-rendered="(\d+)"', dom).group(1))
    assert errors == report.read_text().count('class="errorbar"') == 24

    shot = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={shot}", report.as_uri())
    image = Image.open(shot).convert("RGB")
    counts = {}
    for colour in PALETTE[:4]:  # the four regions
        rgb = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
        counts[colour] = sum(n for n, pixel in image.getcolors(maxcolors=1 << 20) if pixel == rgb)
    assert all(n > 500 for n in counts.values()), counts  # each region's bars cover real area on screen


def test_the_audit_pages_budget_chart_renders_in_chromium(tmp_path):
    common = ["--local", "--out", str(tmp_path / "results"), "--state-dir", str(tmp_path / "state")]
    for template in ("channel_reach", "customer_segments"):
        assert cli.main(["run", template, "--seed", "2", *common], stdout=io.StringIO(), stderr=io.StringIO()) == 0
    assert cli.main(["audit", "--html", *common], stdout=io.StringIO(), stderr=io.StringIO()) == 0
    page = tmp_path / "results" / "audit" / "audit.html"
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.read_text()), "the page must not load anything"
    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    assert int(re.search(r'data-points-rendered="(\d+)"', dom).group(1)) == 2  # one point per charged run
    assert int(re.search(r'data-line-length="(\d+)"', dom).group(1)) > 100  # the cumulative line is drawn


def test_the_rehearsed_segments_relevance_chart_renders_in_chromium(tmp_path):
    """`audience generate --local` adds a section to the report: relevance per segment size, drawn."""
    pytest.importorskip("sklearn")  # requirements-ml.txt, part of the test dependencies
    import csv
    import json

    interactions = Path(cli.__file__).resolve().parent.parent / "data" / "media_interactions" / "media_interactions.csv"
    users = sorted({row["customer_key"] for row in csv.DictReader(interactions.open())})[:40]
    seed = tmp_path / "seed.jsonl"
    seed.write_text("".join(json.dumps({"user_id": u}) + "\n" for u in users))
    code = cli.main(["audience", "generate", "fans", "--local", "--seed-file", str(seed), "--out",
                     str(tmp_path / "results"), "--state-dir", str(tmp_path / "state")],
                    stdout=io.StringIO(), stderr=io.StringIO())
    assert code == 0
    page = tmp_path / "results" / "report.html"
    text = page.read_text()
    assert 'data-audience="fans"' in text
    assert text.count('class="bar"') == 3  # the only section: relevance at sizes 50, 100 and 200
    dom = chromium(tmp_path, "--dump-dom", page.as_uri()).stdout
    assert int(re.search(r'data-bars-rendered="(\d+)"', dom).group(1)) == 3  # each laid out with a size
