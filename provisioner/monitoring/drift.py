"""Drift scores of one feature: a baseline sample against a captured one, pure Python (the samples are bounded).

Numeric features (every baseline value a number):

- Bins are the baseline's deciles: the cut points are the baseline's quantiles at 10 %, 20 %, ... 90 % (linear
  interpolation between order statistics, numpy's default "linear" method), duplicates dropped (a feature with
  few distinct values has fewer bins). Bin j holds the values x with ``cut[j-1] < x <= cut[j]``; the first bin is
  open below and the last open above, so captured values outside the baseline's range land in the outer bins.
- ``psi``: population stability index, ``sum((a - e) * ln(a / e))`` over the bins, with ``e`` the baseline's and
  ``a`` the captured share of each bin; a share of 0 (an empty bin) counts as ``EPSILON`` so the logarithm is
  defined. Usual reading: < 0.1 no shift, 0.1-0.2 moderate, > 0.2 significant.
- ``jensen_shannon``: the Jensen-Shannon distance, base 2 (the square root of the JS divergence; 0 = same
  distribution, 1 = disjoint), over the same bins. Empty bins need no epsilon (0 log 0 = 0).
- ``ks``: the two-sample Kolmogorov-Smirnov statistic, the exact supremum of the difference of the two empirical
  CDFs (no binning).

Categorical features (any baseline value that is not a number): each category is a bin (the union of the
baseline's and the captured categories), for ``psi`` and ``jensen_shannon`` alike. ``ks`` needs an order, which
categories lack: there it is the total variation distance, ``max over sets of categories |P(A) - Q(A)|`` (KS takes
the same supremum over half-lines only), which is as well in [0, 1] and 0 for identical samples.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

METRICS = ("psi", "jensen_shannon", "ks")
#: the share an empty bin counts as in PSI
EPSILON = 1e-4
#: bins of a numeric feature: the baseline's deciles
BINS = 10


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def quantile(ordered: Sequence[float], q: float) -> float:
    """The `q` quantile (0..1) of sorted values, interpolating linearly between order statistics."""
    if not ordered:
        raise ValueError("quantile of no values")
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def cut_points(baseline: Sequence[float], bins: int = BINS) -> list[float]:
    """The baseline's quantiles at 1/bins, 2/bins, ... (bins-1)/bins, ascending, without duplicates."""
    ordered = sorted(baseline)
    cuts: list[float] = []
    for i in range(1, bins):
        cut = quantile(ordered, i / bins)
        if not cuts or cut > cuts[-1]:
            cuts.append(cut)
    return cuts


def binned_shares(values: Sequence[float], cuts: Sequence[float]) -> list[float]:
    """The share of `values` in each bin of `cuts` (len(cuts) + 1 bins; bin j: cuts[j-1] < x <= cuts[j])."""
    counts = [0] * (len(cuts) + 1)
    for value in values:
        counts[bisect.bisect_left(cuts, value)] += 1
    return [c / len(values) for c in counts]


def category_shares(baseline: Sequence[Any], actual: Sequence[Any]) -> tuple[list[float], list[float]]:
    """Shares of each category (the union of both samples' categories, in a stable order)."""
    expected, observed = Counter(baseline), Counter(actual)
    categories = sorted(set(expected) | set(observed), key=lambda c: (str(type(c)), str(c)))
    return ([expected[c] / len(baseline) for c in categories], [observed[c] / len(actual) for c in categories])


def psi_of(expected: Sequence[float], actual: Sequence[float], epsilon: float = EPSILON) -> float:
    """Population stability index of two share vectors (empty bins count as `epsilon`)."""
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, epsilon), max(a, epsilon)
        total += (a - e) * math.log(a / e)
    return total


def js_distance_of(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon distance (base 2) of two share vectors: sqrt((KL(p||m) + KL(q||m)) / 2), m = (p + q) / 2."""
    divergence = 0.0
    for a, b in zip(p, q, strict=True):
        m = (a + b) / 2
        if a > 0:
            divergence += a * math.log2(a / m) / 2
        if b > 0:
            divergence += b * math.log2(b / m) / 2
    return math.sqrt(max(divergence, 0.0))


def ks_statistic(baseline: Sequence[float], actual: Sequence[float]) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: sup over x of |F_baseline(x) - F_actual(x)|, exactly (the
    empirical CDFs only change at sample values, so checking after each distinct value suffices)."""
    xs, ys = sorted(baseline), sorted(actual)
    n, m = len(xs), len(ys)
    i = j = 0
    best = 0.0
    while i < n and j < m:
        x = min(xs[i], ys[j])
        while i < n and xs[i] == x:
            i += 1
        while j < m and ys[j] == x:
            j += 1
        best = max(best, abs(i / n - j / m))
    return best


def total_variation(p: Sequence[float], q: Sequence[float]) -> float:
    return sum(abs(a - b) for a, b in zip(p, q, strict=True)) / 2


def numeric(values: Sequence[Any]) -> bool:
    """Whether a baseline column is numeric (every value a number)."""
    return bool(values) and all(is_number(v) for v in values)


def score(metric: str, baseline: Sequence[Any], actual: Sequence[Any]) -> float:
    """`metric` ("psi", "jensen_shannon", "ks") of the captured values `actual` against `baseline` (both
    non-empty; numeric when every baseline value is a number, else categorical — see the module's docstring)."""
    if metric not in METRICS:
        raise ValueError(f"unknown drift metric {metric!r} (known: {', '.join(METRICS)})")
    if not baseline or not actual:
        raise ValueError("a drift score needs values in both samples")
    if numeric(baseline):
        if not all(is_number(v) for v in actual):
            raise ValueError("the baseline is numeric and the captured values are not all numbers")
        if metric == "ks":
            return ks_statistic(baseline, actual)
        cuts = cut_points(baseline)
        expected, observed = binned_shares(baseline, cuts), binned_shares(actual, cuts)
    else:
        expected, observed = category_shares(baseline, actual)
        if metric == "ks":
            return total_variation(expected, observed)
    return psi_of(expected, observed) if metric == "psi" else js_distance_of(expected, observed)
