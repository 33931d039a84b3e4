"""Differential privacy for the local clean room: measurements and their calibration.

The vocabulary is OpenDP's and Tumult Analytics': a *transformation* (clamping
to declared bounds, truncating each user to a declared number of rows:
localroom/bounds.py) makes the sensitivity of a query a constant; a
*measurement* here adds noise calibrated to that constant; the *accounting*
(localroom/ledger.py) composes what the measurements cost. Nothing in this
module reads the data: every scale is a function of the collaboration's
declared budget, bounds and contribution limit.

Calibration (AWS does not publish its own; this is ours, from what the User
Guide says: configure-differential-privacy, dp-settings, differential-privacy):

- "Noise added per query" N (usersNoisePerQuery): "when the configured Noise
  added per query is 30 users and a COUNT DISTINCT (user_id) query is run, [...]
  random noise that falls between -30 and 30 with high probability because the
  sensitivity of COUNT DISTINCT is 1". We read "high probability" as 95%: the
  *unit scale* is the discrete Gaussian scale whose 95% interval is +-N
  (OpenDP's accuracy_to_discrete_gaussian_scale). Every noisy release (a count,
  a sum, a sum of squares) gets the unit scale times its L2 sensitivity, so
  every release costs the same zCDP rho = 1/(2 unit^2) (OpenDP's privacy map of
  the Gaussian mechanism; Bun & Steinke 2016, Prop. 1.6).
- AWS uses the SampCert sampler (a verified discrete Gaussian sampler;
  differential-privacy page, leanprover/SampCert); we use OpenDP's Gaussian
  mechanism: discrete Gaussian on integers (Canonne, Kamath & Steinke 2020),
  and for sums of reals OpenDP's Gaussian on floats, which it makes exact by
  sampling on a grid (OpenDP's make_gaussian proof).
- Sensitivities (add or remove one user, who adds at most L rows after
  truncation, each value clamped to [low, high]), as Tumult Analytics
  computes them (tests/test_privacy_oracle.py asks Tumult itself): COUNT L;
  COUNT(DISTINCT user) 1, over groups sqrt(L) (a user is in at most L groups,
  once each); COUNT(DISTINCT other) L; SUM L * max(|low|, |high|); AVG a sum
  of (x - mid) with L * half and a count (half = (high - low) / 2). STDDEV
  also releases a sum of squares: ours is of (x - mid)^2 - half^2 / 2, which
  lies in [-half^2/2, half^2/2], so L * half^2 / 2; Tumult's is of x^2 - m2
  (the squares' midpoint), never tighter than ours and equal when low = -high.
  A user's L rows in one group is the worst case of a grouped release, so
  these are L2 sensitivities of the whole vector of groups.
- The budget: the collaboration's epsilon (1-20) per period is an
  (epsilon, DELTA)-DP guarantee. DELTA is split: DELTA_CONVERSION for OpenDP's
  zCDP -> (epsilon, delta) conversion, which gives the period's rho budget,
  and DELTA_SELECTION for the partition selections of the period (each takes
  its share in proportion to its rho, so the period's selections together
  never take more). The number of releases of each type the budget pays for
  is what preview_privacy_impact reports as maxCount.
- Partition selection (group keys no schema declares): OpenDP's Gaussian
  threshold mechanism over each group's count of distinct users (a user adds 1
  to at most L groups), at the unit scale times sqrt(L), so it costs one
  release of rho and its share of DELTA_SELECTION; the threshold is the
  smallest whose delta is within that share (Rogers et al. 2023, OpenDP's
  make_gaussian_threshold).

What it does not promise: AWS's noise, maxCount or remaining budget. It
promises a release that is differentially private for any data, with the
noise the User Guide documents in size, and the same shape of budget (more
noise per query buys more queries; AVG costs two releases, STDDEV three).

OpenDP cannot be seeded (it draws from OpenSSL's CSPRNG, by design). A seeded
run (--seed) draws the same distributions (the exact discrete Gaussian, by
inverse transform on its probability table) from numpy's PCG64: reproducible
for tests and rehearsals, and labelled as not a private release.
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

ALPHA = 0.05  # "with high probability": a count's noise is within +-N 95% of the time
DELTA = 1e-6  # AWS does not publish delta; a small one is the conservative choice
DELTA_CONVERSION = DELTA / 2  # for the Gaussian releases' zCDP -> (epsilon, delta) conversion
DELTA_SELECTION = DELTA / 2  # for a period's partition selections, together

# Noisy releases each aggregation type needs (AVG: a sum and a count; STDDEV: also a sum of squares).
RELEASES = {"COUNT": 1, "COUNT_DISTINCT": 1, "SUM": 1, "AVG": 2, "STDDEV": 3}


def _opendp():
    """OpenDP's modules under the names opendp.prelude gives them, without the prelude: it also imports
    OpenDP's numpy, polars and sklearn extras, which cost a third of a second and nothing here uses."""
    global _DP
    if _DP is None:
        import types

        import opendp.accuracy
        import opendp.combinators
        import opendp.domains
        import opendp.measurements
        import opendp.metrics
        import opendp.mod

        opendp.mod.enable_features("contrib")
        names = {k: v for module in (opendp.domains, opendp.metrics, opendp.accuracy)
                 for k, v in vars(module).items() if not k.startswith("_")}
        names.update(m=opendp.measurements, c=opendp.combinators, enable_features=opendp.mod.enable_features)
        _DP = types.SimpleNamespace(**names)
    return _DP


_DP = None


@dataclass(frozen=True)
class Calibration:
    epsilon: int
    users_noise_per_query: int
    unit_scale: float
    """Discrete Gaussian scale of a release with sensitivity 1 (95% within +-N)."""
    unit_rho: float
    """zCDP cost of one release at unit_scale x its sensitivity."""
    budget_rho: float
    """The period's zCDP budget: epsilon at DELTA_CONVERSION."""

    def rho(self, agg_type: str) -> float:
        return RELEASES[agg_type] * self.unit_rho

    def max_count(self, agg_type: str) -> int:
        return int(self.budget_rho // self.rho(agg_type))

    def max_counts(self) -> dict[str, int]:
        return {t: self.max_count(t) for t in AGG_TYPES}

    @property
    def selection_delta(self) -> float:
        """The delta one partition selection may spend: its rho's share of DELTA_SELECTION."""
        return DELTA_SELECTION * self.unit_rho / self.budget_rho


@dataclass(frozen=True)
class NoisePart:
    part: str  # "count", "sum", "sum of squares"
    integer: bool  # discrete Gaussian (counts) or Gaussian (sums)
    sensitivity: float  # L2 over every group, adding or removing one user
    sigma: float


def aggregate_noise(kind: str, calibration: Calibration, *, contribution_limit: int,
                    bounds: tuple[float, float] | None = None, grouped: bool = False,
                    distinct_user: bool = False) -> list[NoisePart]:
    """The noisy parts of one aggregate of ``kind`` and their scales (the module docstring's formulas).

    ``bounds`` is the clamping range of the aggregated value (SUM, AVG, STDDEV);
    ``distinct_user`` says a COUNT_DISTINCT counts the user identifier itself.
    """
    limit, unit = int(contribution_limit), calibration.unit_scale
    if limit < 1:
        raise ValueError("the contribution limit is at least 1")

    def part(name: str, integer: bool, sensitivity: float) -> NoisePart:
        return NoisePart(name, integer, float(sensitivity), unit * float(sensitivity))

    if kind == "COUNT":
        return [part("count", True, limit)]
    if kind == "COUNT_DISTINCT":
        return [part("count", True, (math.sqrt(limit) if grouped else 1.0) if distinct_user else limit)]
    if bounds is None:
        raise ValueError(f"{kind} needs the clamping bounds of its argument")
    low, high = bounds
    if kind == "SUM":
        return [part("sum", False, limit * max(abs(low), abs(high)))]
    half = (high - low) / 2
    parts = [part("sum", False, limit * half), part("count", True, limit)]
    if kind == "AVG":
        return parts
    if kind == "STDDEV":  # the sum of (x - mid)^2 - half^2/2: each row's term is within half^2/2 of zero
        return [parts[0], part("sum of squares", False, limit * half * half / 2), parts[1]]
    raise ValueError(f"not a differential-privacy aggregation: {kind}")


# OpenDP's answers for every epsilon (1-20) and usersNoisePerQuery (10-100) the
# service accepts, computed once by `python -m localroom.privacy` and checked
# against OpenDP by tests/test_privacy.py: a run then needs no OpenDP call
# unless it samples noise with OpenDP.
TABLE = Path(__file__).with_name("calibration.json")
EPSILONS = range(1, 21)
NOISES = range(10, 101)


@lru_cache(maxsize=64)
def calibrate(epsilon: int, users_noise_per_query: int) -> Calibration:
    table = _table()
    noise = table["noise"].get(str(users_noise_per_query)) or _noise_entry(users_noise_per_query)
    budget = table["budget_rho"].get(str(epsilon)) or _budget_rho(float(epsilon))
    return Calibration(epsilon, users_noise_per_query, noise["unit_scale"], noise["unit_rho"], budget)


@lru_cache(maxsize=1)
def _table() -> dict:
    try:
        data = json.loads(TABLE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"noise": {}, "budget_rho": {}}
    same = data.get("alpha") == ALPHA and data.get("delta_conversion") == DELTA_CONVERSION
    return data if same else {"noise": {}, "budget_rho": {}}


def compute_table() -> dict:
    return {"alpha": ALPHA, "delta_conversion": DELTA_CONVERSION,
            "noise": {str(n): _noise_entry(n) for n in NOISES},
            "budget_rho": {str(e): _budget_rho(float(e)) for e in EPSILONS}}


def _noise_entry(users_noise_per_query: int) -> dict[str, float]:
    dp = _opendp()
    scale = dp.accuracy_to_discrete_gaussian_scale(accuracy=float(users_noise_per_query), alpha=ALPHA)
    rho = dp.m.make_gaussian(dp.atom_domain(T="i64"), dp.absolute_distance(T="i64"), scale=scale).map(1)
    return {"unit_scale": scale, "unit_rho": rho}


def _budget_rho(epsilon: float) -> float:
    """The zCDP rho whose (epsilon, DELTA_CONVERSION)-DP guarantee is the given epsilon (OpenDP's conversion)."""
    dp = _opendp()

    def eps_at(scale: float) -> tuple[float, float]:
        meas = dp.m.make_gaussian(dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float), scale=scale)
        return meas.map(1.0), dp.c.make_zCDP_to_approxDP(meas).map(1.0).epsilon(DELTA_CONVERSION)

    # The classical bound epsilon = rho + 2 sqrt(rho ln(1/delta)) gives the largest scale
    # (OpenDP's conversion is tighter, so the answer's rho is larger); epsilon >= rho the smallest.
    log_delta = math.log(1 / DELTA_CONVERSION)
    rho_classical = (math.sqrt(log_delta + epsilon) - math.sqrt(log_delta)) ** 2
    low, high = 1 / math.sqrt(2 * epsilon), 1 / math.sqrt(2 * rho_classical)
    for _ in range(24):  # the bracket is < 4x wide: 24 halvings leave < 1e-6 relative
        mid = math.sqrt(low * high)
        if eps_at(mid)[1] > epsilon:
            low = mid
        else:
            high = mid
    return eps_at(high)[0]


def guarantee(calibration: Calibration, rho: float, selections: int = 0) -> tuple[float, float]:
    """(epsilon, delta) of releases costing ``rho`` in all, with ``selections`` partition selections among them.

    OpenDP's zCDP -> (epsilon, delta) conversion at DELTA_CONVERSION, plus each
    selection's delta: what a single run, or a whole ledger period, guarantees.
    """
    dp = _opendp()
    if rho <= 0:
        return 0.0, selections * calibration.selection_delta
    meas = dp.m.make_gaussian(dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float),
                              scale=1 / math.sqrt(2 * rho))
    epsilon = dp.c.make_zCDP_to_approxDP(meas).map(1.0).epsilon(DELTA_CONVERSION)
    return epsilon, DELTA_CONVERSION + selections * calibration.selection_delta


# --------------------------------------------------------------------------
# Partition selection


@dataclass(frozen=True)
class Selection:
    """The Gaussian threshold mechanism for group keys no schema declares."""

    scale: float
    threshold: int
    delta: float


@lru_cache(maxsize=256)
def selection(calibration: Calibration, contribution_limit: int) -> Selection:
    """Scale and threshold releasing a key whose noisy distinct-user count exceeds it (costs one release)."""
    dp = _opendp()
    limit = int(contribution_limit)
    scale = calibration.unit_scale * math.sqrt(limit)
    target = calibration.selection_delta

    def delta_at(threshold: int) -> float:
        meas = dp.m.make_gaussian_threshold(dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T="i64")),
                                            dp.l02inf_distance(dp.absolute_distance(T="i64")),
                                            scale=scale, threshold=threshold)
        # (l0, l2, linf) = (L, L, 1): a user adds 1 to at most L keys; OpenDP takes l2 = min(l2, sqrt(l0) linf).
        return meas.map((limit, limit, 1))[1]

    low, high = 1, max(2, int(scale))
    while delta_at(high) > target:
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if delta_at(mid) > target else (low, mid)
    return Selection(scale=scale, threshold=high, delta=delta_at(high))


# --------------------------------------------------------------------------
# Noise


class OpenDPNoise:
    """OpenDP's mechanisms: the default, a real private release."""

    seeded = False

    def integers(self, values: np.ndarray, scale: float) -> np.ndarray:
        if len(values) == 0:
            return values.astype(np.int64)
        dp = _opendp()
        meas = dp.m.make_gaussian(dp.vector_domain(dp.atom_domain(T="i64")), dp.l2_distance(T="i64"), scale=scale)
        return np.asarray(meas([int(v) for v in values]), dtype=np.int64)

    def reals(self, values: np.ndarray, scale: float) -> np.ndarray:
        if len(values) == 0:
            return values.astype(float)
        dp = _opendp()
        meas = dp.m.make_gaussian(dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l2_distance(T=float),
                                  scale=scale)
        return np.asarray(meas([float(v) for v in values]), dtype=float)

    def select(self, counts: dict[str, int], chosen: Selection) -> set[str]:
        """The keys the threshold mechanism releases."""
        if not counts:
            return set()
        dp = _opendp()
        meas = dp.m.make_gaussian_threshold(dp.map_domain(dp.atom_domain(T=str), dp.atom_domain(T="i64")),
                                            dp.l02inf_distance(dp.absolute_distance(T="i64")),
                                            scale=chosen.scale, threshold=chosen.threshold)
        return set(meas({k: int(v) for k, v in counts.items()}))


class SeededNoise:
    """The same distributions from numpy's PCG64, for reproducible runs (--seed); not a private release."""

    seeded = True

    def __init__(self, seed: int):
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def integers(self, values: np.ndarray, scale: float) -> np.ndarray:
        return values.astype(np.int64) + discrete_gaussian(self.rng, scale, len(values))

    def reals(self, values: np.ndarray, scale: float) -> np.ndarray:
        return values.astype(float) + self.rng.normal(0.0, scale, len(values))

    def select(self, counts: dict[str, int], chosen: Selection) -> set[str]:
        keys = sorted(counts)
        noisy = np.asarray([counts[k] for k in keys], dtype=np.int64) + discrete_gaussian(self.rng, chosen.scale,
                                                                                          len(keys))
        return {k for k, v in zip(keys, noisy) if v > chosen.threshold}


def discrete_gaussian(rng: np.random.Generator, scale: float, size: int) -> np.ndarray:
    """Exact discrete Gaussian draws (P(x) proportional to exp(-x^2 / 2 scale^2)) by inverse transform.

    The support is cut at 40 scales either side, where the mass left out is
    below exp(-800): no double can tell the difference.
    """
    if size == 0:
        return np.zeros(0, dtype=np.int64)
    reach = int(math.ceil(40 * scale)) + 1
    support = np.arange(-reach, reach + 1, dtype=np.int64)
    weights = np.exp(-(support.astype(float) ** 2) / (2 * scale * scale))
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    return support[np.searchsorted(cdf, rng.random(size), side="right").clip(0, len(support) - 1)]


def main() -> int:
    """Recompute the calibration table with OpenDP (after changing ALPHA, DELTA or OpenDP)."""
    TABLE.write_text(json.dumps(compute_table(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {TABLE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
