"""The local clean room's noise scales against Tumult Analytics', an independent implementation.

For each aggregate (COUNT, COUNT DISTINCT of the user or of another column,
SUM, AVG, STDDEV), grouped and not, contribution limits 1 and 3 and two
clamping ranges, localroom.privacy.aggregate_noise gives the noisy parts and
their sigmas; tests/oracle/tumult_noise.py asks Tumult for the noise it would
add to the same aggregate at the same zCDP cost (calibration.rho(kind)), under
AddRowsWithID with MaxRowsPerID(L). Both must agree part by part (relative
1e-6), the sensitivities too, except STDDEV's sum of squares: the project
releases another statistic than Tumult's there (centred, so never noisier),
which Tumult's SUM must then agree with
(test_stddev_sum_of_squares_is_tumults_sum_of_its_statistic).

Tumult needs its own virtualenv (requirements-tumult.txt; bash scripts/setup-tumult,
which scripts/test runs). Without it these tests are skipped, unless
REQUIRE_TUMULT=1 (CI), where they fail. The oracle runs once for all cases
(one Spark JVM, 10-20 s on 2 cores); its answer is kept in venv-tumult/oracle-cache/
under a hash of the oracle, the requirements, Tumult's installed packages and
the cases, so a second run costs nothing. REQUIRE_TUMULT=1 always runs Tumult.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess

import pytest

from localroom.privacy import calibrate
from tests.harness import ROOT

VENV = ROOT / "venv-tumult"
PYTHON = VENV / "bin" / "python"
ORACLE = ROOT / "tests" / "oracle" / "tumult_noise.py"
REQUIREMENTS = ROOT / "requirements-tumult.txt"
REQUIRED = os.environ.get("REQUIRE_TUMULT") == "1"
REL = 1e-6

pytestmark = pytest.mark.skipif(not PYTHON.exists() and not REQUIRED,
                                reason="no ./venv-tumult (bash scripts/setup-tumult); REQUIRE_TUMULT=1 makes "
                                       "this a failure")

CALIBRATION = calibrate(10, 20)
BOUNDS = ((0.0, 250.0), (-10.0, 40.0))


def _case(kind: str, grouped: bool, limit: int, bounds=None, distinct_user: bool = False,
          rho: float | None = None) -> dict:
    return {"kind": kind, "grouped": grouped, "bounds": list(bounds) if bounds else None,
            "contribution_limit": limit, "rho": CALIBRATION.rho(kind) if rho is None else rho,
            "distinct_user": distinct_user}


def _name(case: dict) -> str:
    kind = case["kind"] + ("(user)" if case["distinct_user"] else "")
    bounds = f"-[{case['bounds'][0]:g},{case['bounds'][1]:g}]" if case["bounds"] else ""
    return f"{kind}-{'grouped' if case['grouped'] else 'total'}-L{case['contribution_limit']}{bounds}"


CASES = []
for _grouped in (False, True):
    for _limit in (1, 3):
        CASES.append(_case("COUNT", _grouped, _limit))
        CASES += [_case("COUNT_DISTINCT", _grouped, _limit, distinct_user=du) for du in (True, False)]
        CASES += [_case(kind, _grouped, _limit, b) for b in BOUNDS for kind in ("SUM", "AVG", "STDDEV")]
CASE_IDS = [_name(c) for c in CASES]


def _squared_deviation_sum(case: dict) -> dict:
    """Tumult's SUM of the statistic the project releases for STDDEV's third part, (x - mid)^2 - half^2/2 in
    [-half^2/2, half^2/2] (half = (high - low) / 2), at the third of STDDEV's cost each of its parts gets.

    Tumult's own STDDEV releases a sum of x^2 - m2 instead, whose sensitivity is never below ours
    (equal when low = -high): test_our_sum_of_squares_is_never_looser_than_tumults."""
    low, high = case["bounds"]
    half = (high - low) / 2
    return _case("SUM", case["grouped"], case["contribution_limit"], (-half * half / 2, half * half / 2),
                 rho=CALIBRATION.rho("STDDEV") / 3)


EXTRA = {_name(c): _squared_deviation_sum(c) for c in CASES if c["kind"] == "STDDEV"}


def _run_oracle(cases: list[dict]) -> list:
    payload = json.dumps(cases, sort_keys=True)
    installed = sorted(p.name for p in VENV.glob("lib/python*/site-packages/*.dist-info"))
    key = hashlib.sha256(b"\0".join([ORACLE.read_bytes(), REQUIREMENTS.read_bytes(),
                                     "\n".join(installed).encode(), payload.encode()])).hexdigest()[:32]
    cache = VENV / "oracle-cache" / f"{key}.json"
    if cache.is_file() and not REQUIRED:
        return json.loads(cache.read_text(encoding="utf-8"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    proc = subprocess.run([str(PYTHON), str(ORACLE)], input=payload, capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=600, check=False)
    assert proc.returncode == 0, f"tests/oracle/tumult_noise.py failed:\n{proc.stderr[-4000:]}"
    answer = json.loads(proc.stdout)
    assert len(answer) == len(cases)
    cache.parent.mkdir(exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(proc.stdout, encoding="utf-8")
    os.replace(tmp, cache)
    return answer


@pytest.fixture(scope="module")
def tumult() -> dict[str, dict[str, dict]]:
    """Tumult's noise parts of every case, by case name and part name: one oracle run for all."""
    assert PYTHON.exists(), "REQUIRE_TUMULT=1 but there is no ./venv-tumult: run bash scripts/setup-tumult"
    names = CASE_IDS + [f"{name} (x-mid)^2" for name in EXTRA]
    named = {}
    for name, parts in zip(names, _run_oracle(CASES + list(EXTRA.values()))):
        named[name] = {p["part"]: p for p in parts}
        assert len(named[name]) == len(parts), (name, parts)
    return named


def _project(case: dict) -> dict:
    from localroom.privacy import aggregate_noise  # in the test, so that the other tests run without it

    parts = aggregate_noise(case["kind"], CALIBRATION, contribution_limit=case["contribution_limit"],
                            bounds=tuple(case["bounds"]) if case["bounds"] else None, grouped=case["grouped"],
                            distinct_user=case["distinct_user"])
    named = {p.part: p for p in parts}
    assert len(named) == len(parts), parts
    return named


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_noise_parts_match_tumult(tumult, case):
    ours, theirs = _project(case), tumult[_name(case)]
    assert set(ours) == set(theirs), f"parts: ours {sorted(ours)}, Tumult's {sorted(theirs)}"
    for name, part in ours.items():
        if case["kind"] == "STDDEV" and name == "sum of squares":
            continue  # another statistic than Tumult's: the test below
        tumult_part = theirs[name]
        assert _close(part.sigma, tumult_part["sigma"]), (name, part, tumult_part)
        assert _close(part.sensitivity, tumult_part["sensitivity"]), (name, part, tumult_part)
        if len(ours) == 1:
            # A count alone is an integer release for both (discrete Gaussian), a sum of DECIMAL values a
            # real one (Gaussian). AVG's and STDDEV's counts take Tumult's mechanism of the measure column.
            assert part.integer == (tumult_part["mechanism"] == "DISCRETE_GAUSSIAN"), (name, part, tumult_part)


@pytest.mark.parametrize("case", [c for c in CASES if c["kind"] == "STDDEV"],
                         ids=[n for n, c in zip(CASE_IDS, CASES) if c["kind"] == "STDDEV"])
def test_stddev_sum_of_squares_is_tumults_sum_of_its_statistic(tumult, case):
    # Not Tumult's third part: Tumult 0.21 releases sum(x^2 - m2), m2 the midpoint of the squares' range
    # [lo2, hi2] (lo2 = 0 when low <= 0 <= high), sensitivity L (hi2 - lo2) / 2; the project releases the
    # squared deviations from the midpoint of [low, high] less half^2/2, each in [-half^2/2, half^2/2].
    # Its noise must be what Tumult's own SUM gives that statistic, clamped to that range, at the same cost,
    # and never more than Tumult's STDDEV adds to its own sum of squares.
    ours = _project(case)["sum of squares"]
    (tumult_sum,) = tumult[_name(case) + " (x-mid)^2"].values()
    assert _close(ours.sigma, tumult_sum["sigma"]), (ours, tumult_sum)
    assert _close(ours.sensitivity, tumult_sum["sensitivity"]), (ours, tumult_sum)
    theirs = tumult[_name(case)]["sum of squares"]
    assert ours.sigma <= theirs["sigma"] * (1 + REL), (ours, theirs)
