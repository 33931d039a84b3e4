"""The error of each noisy value: its noise standard deviation and a 95% interval.

Post-processing only: every input is a released noisy part, the declared
bounds or the calibration's scales, never an exact value, so showing the
error costs no privacy (docs/local-clean-room.md, "What is guaranteed").

- COUNT, COUNT DISTINCT, SUM: the noise's own interval, value +- its 97.5%
  quantile (the discrete Gaussian's, from its probability table, for counts;
  1.96 sigma for sums); a count is at least 0.
- AVG (mid + S/C from a noisy shifted sum S and a noisy count C): Fieller's
  interval for a ratio of two Gaussians, {m : |S - (m - mid) C| <= z sqrt(sd_S^2
  + (m - mid)^2 sd_C^2)}, exact for Gaussian noise, within the declared bounds
  (where the count is too noisy to bound it, the bounds themselves).
- STDDEV: no closed form; the 2.5% and 97.5% quantiles of the deviation
  recomputed from the noisy parts minus fresh noise of the same scales (2,000
  draws, a generator seeded by the parts, so the same release shows the same
  interval), within [0, the largest deviation the bounds allow].

The noise sd shown for AVG and STDDEV is the delta-method / simulated spread of
the estimate given the noisy parts; tests/test_intervals.py checks every
interval's coverage against simulated true values.
"""

from __future__ import annotations

import hashlib
import math
from functools import lru_cache

import numpy as np

Z = 1.959963984540054  # the normal's 97.5% quantile
DRAWS = 2000


@lru_cache(maxsize=256)
def count_halfwidth(sigma: float) -> int:
    """The smallest k with P(|noise| <= k) >= 95% for the discrete Gaussian of scale ``sigma``."""
    reach = int(math.ceil(40 * sigma)) + 1
    support = np.arange(0, reach + 1)
    weights = np.exp(-(support.astype(float) ** 2) / (2 * sigma * sigma))
    mass = np.concatenate([[weights[0]], 2 * weights[1:]])
    cdf = np.cumsum(mass) / mass.sum()
    return int(support[np.searchsorted(cdf, 0.95)])


def plain(values: np.ndarray, sigma: float, integer: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sd, low, high) of noisy counts or sums."""
    values = np.asarray(values, dtype=float)
    half = count_halfwidth(sigma) if integer else Z * sigma
    low = values - half
    return np.full(len(values), sigma), np.maximum(low, 0) if integer else low, values + half


def average(s: np.ndarray, c: np.ndarray, sd_s: float, sd_c: float, bounds: tuple[float, float]):
    """(sd, low, high) of mid + S/C: Fieller's 95% interval, within ``bounds``."""
    low, high = bounds
    mid = (low + high) / 2
    s, c = np.asarray(s, dtype=float), np.asarray(c, dtype=float)
    # (S - t C)^2 <= z^2 (sd_S^2 + t^2 sd_C^2), t = m - mid: a t^2 + b t + k <= 0
    a = c * c - Z * Z * sd_c * sd_c
    b = -2 * s * c
    k = s * s - Z * Z * sd_s * sd_s
    disc = b * b - 4 * a * k
    bounded = (a > 0) & (disc >= 0)
    root = np.sqrt(np.where(bounded, disc, 0.0))
    safe = np.where(bounded, a, 1.0)
    t1, t2 = (-b - root) / (2 * safe), (-b + root) / (2 * safe)
    lo = np.where(bounded, np.clip(mid + np.minimum(t1, t2), low, high), low)
    hi = np.where(bounded, np.clip(mid + np.maximum(t1, t2), low, high), high)
    n = np.maximum(c, 1.0)
    estimate = s / n
    sd = np.sqrt(sd_s * sd_s + estimate * estimate * sd_c * sd_c) / n
    return np.minimum(sd, (high - low) / 2), lo, hi


def deviation(s: np.ndarray, q: np.ndarray, c: np.ndarray, sds: tuple[float, float, float],
              bounds: tuple[float, float], population: bool):
    """(sd, low, high) of the STDDEV from its noisy parts: simulated 2.5% and 97.5% quantiles.

    ``q`` is the released sum of (x - mid)^2 - half^2/2 (localroom/privacy.aggregate_noise): the sum of
    squared deviations is ``q + c * half^2/2``, recomputed for each simulated count.
    """
    s, q, c = (np.asarray(v, dtype=float) for v in (s, q, c))
    half = (bounds[1] - bounds[0]) / 2
    if len(s) == 0:
        empty = np.zeros(0)
        return empty, empty, empty
    seed = int.from_bytes(hashlib.sha256(np.stack([s, q, c]).tobytes()).digest()[:8], "big")
    rng = np.random.Generator(np.random.PCG64(seed))
    shape = (DRAWS, len(s))
    true_s = s - rng.normal(0, sds[0], shape)
    true_c = c - rng.normal(0, sds[2], shape)
    true_q = q - rng.normal(0, sds[1], shape) + true_c * half * half / 2
    values = stddev_of(true_s, true_q, true_c, bounds, population)
    lo, hi = np.quantile(values, [0.025, 0.975], axis=0)
    return values.std(axis=0), lo, hi


def stddev_of(s, q, c, bounds: tuple[float, float], population: bool):
    """The deviation from a sum of (x - mid), a sum of (x - mid)^2 and a count, as the engine computes it."""
    half = (bounds[1] - bounds[0]) / 2
    n = np.maximum(c, 1.0 if population else 2.0)
    spread = q - s * s / n
    var = spread / n if population else spread / (n - 1)
    most = half if population else half * np.sqrt(n / (n - 1))
    return np.minimum(np.sqrt(np.maximum(var, 0.0)), most)
