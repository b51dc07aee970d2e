"""Uncertainty of a mean over per-sample scores, and the small-sample quantiles it needs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mean_with_uncertainty(values: Sequence[float], *, resamples: int = 2000, seed: int = 0,
                          ) -> tuple[float, float | None, float | None, float | None]:
    """(mean, standard error, 95% percentile-bootstrap CI low, high); uncertainty is None for n < 2."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("no values")
    mean = float(x.mean())
    if x.size < 2:
        return mean, None, None, None
    stderr = float(x.std(ddof=1) / np.sqrt(x.size))
    rng = np.random.default_rng(seed)
    boot = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    low, high = np.quantile(boot, [0.025, 0.975])
    return mean, stderr, float(low), float(high)


def t_quantile(z: float, dof: int) -> float:
    """Student's t quantile with `dof` degrees of freedom at the two-sided level that `z` has for a normal
    (z = 1.96 -> 95 %): the multiplier of a standard error estimated from dof + 1 values."""
    from scipy.stats import norm, t

    return float(t.ppf(norm.cdf(z), dof)) if dof >= 1 else float("inf")
