"""Differential privacy for the local clean room: calibration, accounting, noise.

AWS does not publish how Clean Rooms calibrates its noise, so this is our own
derivation from what the User Guide does say (configure-differential-privacy,
dp-settings, differential-privacy):

- "Noise added per query" N (usersNoisePerQuery): "when the configured Noise
  added per query is 30 users and a COUNT DISTINCT (user_id) query is run, [...]
  random noise that falls between -30 and 30 with high probability because the
  sensitivity of COUNT DISTINCT is 1". We read "high probability" as 95%: the
  unit noise scale is the Gaussian scale whose 95% interval is +-N, computed by
  OpenDP's accuracy_to_(discrete_)gaussian_scale.
- Noise grows with sensitivity: COUNT "is scaled by the user contribution
  limit" (UCL, the most rows one user contributes to the query), SUM "by the
  user contribution limit times the maximum value". Both are computed from the
  data at run time, as AWS says its sensitivity parameters are.
- AWS uses the SampCert sampler (discrete Gaussian, zero-concentrated DP). We
  add OpenDP's Gaussian mechanism: discrete Gaussian for counts, Gaussian for
  sums; AVG is a noisy SUM over a noisy COUNT, STDDEV adds a noisy sum of squares.
- The budget: epsilon (1-20) is converted to a zCDP budget rho at DELTA with
  OpenDP's zCDP -> (epsilon, delta) conversion; each noisy release at the unit
  scale costs rho = 1/(2 scale^2) whatever its sensitivity, so the number of
  aggregations the budget pays for per type (what preview_privacy_impact
  reports as maxCount) is the budget's rho over that type's rho.

What it does not promise: the same noise, the same maxCount or the same
remaining budget as AWS; only the same shape (more noise per query means more
queries, AVG costs more than SUM, which costs about what COUNT does).

OpenDP cannot be seeded (it draws from OpenSSL's CSPRNG, by design). A seeded
run (--seed) draws the same calibrated distributions from numpy's PCG64 instead
(a rounded Gaussian for counts): reproducible for tests and rehearsals, and
labelled as not a private release.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from model.budget import AGG_TYPES

ALPHA = 0.05  # "with high probability": the noise is within +-N 95% of the time
DELTA = 1e-6  # AWS does not publish delta; a small one is the conservative choice

# Noisy releases each aggregation type needs: (integer releases, real releases).
_RELEASES = {"COUNT": (1, 0), "COUNT_DISTINCT": (1, 0), "SUM": (0, 1), "AVG": (1, 1), "STDDEV": (1, 2)}


def _opendp():
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp


@dataclass(frozen=True)
class Calibration:
    epsilon: int
    users_noise_per_query: int
    int_scale: float
    """Discrete Gaussian scale of a count with sensitivity 1 (95% within +-N)."""
    real_scale: float
    """Gaussian scale of a sum with sensitivity 1."""
    int_rho: float
    real_rho: float
    budget_rho: float

    def rho(self, agg_type: str) -> float:
        ints, reals = _RELEASES[agg_type]
        return ints * self.int_rho + reals * self.real_rho

    def max_count(self, agg_type: str) -> int:
        return int(self.budget_rho // self.rho(agg_type))

    def max_counts(self) -> dict[str, int]:
        return {t: self.max_count(t) for t in AGG_TYPES}


# OpenDP's answers for every epsilon (1-20) and usersNoisePerQuery (10-100) the
# service accepts, computed once by `python -m localroom.privacy` and checked
# against OpenDP by tests/test_localroom.py: a run then needs no OpenDP call
# unless it samples noise with OpenDP.
TABLE = Path(__file__).with_name("calibration.json")
EPSILONS = range(1, 21)
NOISES = range(10, 101)


@lru_cache(maxsize=64)
def calibrate(epsilon: int, users_noise_per_query: int) -> Calibration:
    table = _table()
    noise = table["noise"].get(str(users_noise_per_query)) or _noise_entry(users_noise_per_query)
    budget = table["budget_rho"].get(str(epsilon)) or _budget_rho(float(epsilon))
    return Calibration(epsilon, users_noise_per_query, noise["int_scale"], noise["real_scale"], noise["int_rho"],
                       noise["real_rho"], budget)


@lru_cache(maxsize=1)
def _table() -> dict:
    try:
        data = json.loads(TABLE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"noise": {}, "budget_rho": {}}
    same = data.get("alpha") == ALPHA and data.get("delta") == DELTA
    return data if same else {"noise": {}, "budget_rho": {}}


def compute_table() -> dict:
    return {"alpha": ALPHA, "delta": DELTA,
            "noise": {str(n): _noise_entry(n) for n in NOISES},
            "budget_rho": {str(e): _budget_rho(float(e)) for e in EPSILONS}}


def _noise_entry(users_noise_per_query: int) -> dict[str, float]:
    dp = _opendp()
    accuracy = float(users_noise_per_query)
    int_scale = dp.accuracy_to_discrete_gaussian_scale(accuracy=accuracy, alpha=ALPHA)
    real_scale = dp.accuracy_to_gaussian_scale(accuracy=accuracy, alpha=ALPHA)
    int_rho = dp.m.make_gaussian(dp.atom_domain(T="i64"), dp.absolute_distance(T="i64"), scale=int_scale).map(1)
    real_rho = dp.m.make_gaussian(dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float),
                                  scale=real_scale).map(1.0)
    return {"int_scale": int_scale, "real_scale": real_scale, "int_rho": int_rho, "real_rho": real_rho}


def _budget_rho(epsilon: float) -> float:
    """The zCDP rho whose (epsilon, DELTA)-DP guarantee is the given epsilon (OpenDP's conversion)."""
    dp = _opendp()

    def eps_at(scale: float) -> tuple[float, float]:
        meas = dp.m.make_gaussian(dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float), scale=scale)
        return meas.map(1.0), dp.c.make_zCDP_to_approxDP(meas).map(1.0).epsilon(DELTA)

    # The classical bound epsilon = rho + 2 sqrt(rho ln(1/delta)) gives the largest scale
    # (OpenDP's conversion is tighter, so the answer's rho is larger); epsilon >= rho the smallest.
    log_delta = math.log(1 / DELTA)
    rho_classical = (math.sqrt(log_delta + epsilon) - math.sqrt(log_delta)) ** 2
    low, high = 1 / math.sqrt(2 * epsilon), 1 / math.sqrt(2 * rho_classical)
    for _ in range(24):  # the bracket is < 4x wide: 24 halvings leave < 1e-6 relative
        mid = math.sqrt(low * high)
        if eps_at(mid)[1] > epsilon:
            low = mid
        else:
            high = mid
    return eps_at(high)[0]


# --------------------------------------------------------------------------
# Noise


class OpenDPNoise:
    """OpenDP's Gaussian mechanism: the default, a real private release."""

    seeded = False

    def integers(self, values: np.ndarray, scale: float) -> np.ndarray:
        if scale <= 0 or len(values) == 0:
            return values.astype(np.int64)
        dp = _opendp()
        meas = dp.m.make_gaussian(dp.vector_domain(dp.atom_domain(T="i64")), dp.l2_distance(T="i64"), scale=scale)
        return np.asarray(meas([int(v) for v in values]), dtype=np.int64)

    def reals(self, values: np.ndarray, scale: float) -> np.ndarray:
        if scale <= 0 or len(values) == 0:
            return values.astype(float)
        dp = _opendp()
        meas = dp.m.make_gaussian(dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l2_distance(T=float),
                                  scale=scale)
        return np.asarray(meas([float(v) for v in values]), dtype=float)


class SeededNoise:
    """The same distributions from numpy's PCG64, for reproducible runs (--seed); not a private release."""

    seeded = True

    def __init__(self, seed: int):
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def integers(self, values: np.ndarray, scale: float) -> np.ndarray:
        noise = np.rint(self.rng.normal(0.0, scale, len(values))) if scale > 0 else 0
        return (values + noise).astype(np.int64)

    def reals(self, values: np.ndarray, scale: float) -> np.ndarray:
        noise = self.rng.normal(0.0, scale, len(values)) if scale > 0 else 0.0
        return values.astype(float) + noise


def main() -> int:
    """Recompute the calibration table with OpenDP (after changing ALPHA, DELTA or OpenDP)."""
    TABLE.write_text(json.dumps(compute_table(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {TABLE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
