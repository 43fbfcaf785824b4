#!/usr/bin/env python3
"""Generates engine/tests/fixtures/stats/*.json from scipy and numpy (see docs/statistics.md).

Run from the repository root:  pip install scipy numpy && python3 scripts/gen-stats-fixtures.py

Python is needed only to regenerate; the fixtures are committed and
engine/tests/stats_fixtures.rs runs them. Conventions: x = treatment, y = control,
`u` = scipy's statistic (U1 of the treatment).

Every case carries the expected U, U2, p-value, z (asymptotic), method, medians and the
Hodges-Lehmann estimate and interval. Where scipy can run on the samples it is the
reference. For histograms with millions of counts per bin, scipy cannot expand them, so
the reference is the formula of docs/statistics.md, "U from histograms", evaluated in
exact integer arithmetic; this script first asserts that the formula equals scipy on
smaller expansions.
"""

import json
import math
import os
from fractions import Fraction

import numpy as np
from scipy import special
from scipy.stats import mannwhitneyu

OUT = os.path.join(os.path.dirname(__file__), "..", "engine", "tests", "fixtures", "stats")


def floats(values):
    return [float(v) for v in values]


def hl_explicit(x, y, confidence):
    """The Hodges-Lehmann estimate and interval from the explicit sorted differences."""
    d = np.sort(np.subtract.outer(np.asarray(x, float), np.asarray(y, float)).ravel())
    m = d.size
    sigma = sigma_u_samples(x, y)
    z = special.ndtri(1 - (1 - confidence) / 2)
    k = max(1, math.floor(m / 2 - z * sigma))
    return {
        "estimate": float(np.median(d)),
        "ci": [float(d[k - 1]), float(d[m - k])],
        "confidence": confidence,
    }


def groups_of(x, y):
    values, inverse = np.unique(np.concatenate([x, y]), return_inverse=True)
    cx = np.bincount(inverse[: len(x)], minlength=len(values))
    cy = np.bincount(inverse[len(x):], minlength=len(values))
    return values, cx, cy


def exact_sums(cx, cy):
    """Section 7.1 in Python integers: 2*U1, n1, n2, tie term."""
    n1, n2 = int(sum(cx)), int(sum(cy))
    below, twice_r1, ties = 0, 0, 0
    for a, b in zip(cx, cy):
        a, b = int(a), int(b)
        t = a + b
        twice_r1 += a * (2 * below + t + 1)
        below += t
        ties += t ** 3 - t
    return twice_r1 - n1 * (n1 + 1), n1, n2, ties


def sigma_from(n1, n2, ties):
    n = n1 + n2
    variance = Fraction(n1 * n2, 12) * Fraction((n + 1) * n * (n - 1) - ties, n * (n - 1))
    return math.sqrt(variance)


def sigma_u_samples(x, y):
    _, cx, cy = groups_of(np.asarray(x, float), np.asarray(y, float))
    _, n1, n2, ties = exact_sums(cx, cy)
    return sigma_from(n1, n2, ties)


def formula(cx, cy, alternative, continuity):
    """The normal approximation on the rank sums of a histogram."""
    twice_u1, n1, n2, ties = exact_sums(cx, cy)
    sigma = sigma_from(n1, n2, ties)
    dev = Fraction(twice_u1 - n1 * n2, 2)
    if alternative == "greater":
        num, f = dev, 1
    elif alternative == "less":
        num, f = -dev, 1
    else:
        num, f = abs(dev), 2
    if continuity:
        num -= Fraction(1, 2)
    u1 = twice_u1 / 2
    if sigma == 0:
        return u1, n1 * n2 - u1, None, 1.0
    z = float(num) / sigma
    return u1, n1 * n2 - u1, z, min(1.0, f * float(special.ndtr(-z)))


def mwu_case(name, x, y, alternative, method="auto", continuity=True, confidence=0.95, hl=True):
    x, y = np.asarray(x, float), np.asarray(y, float)
    res = mannwhitneyu(x, y, alternative=alternative, method=method, use_continuity=continuity)
    _, cx, cy = groups_of(x, y)
    ties = bool(np.any(cx + cy > 1))
    chosen = method
    if method == "auto":
        chosen = "exact" if min(len(x), len(y)) <= 8 and not ties else "asymptotic"
    u1, u2, z, p = formula(cx, cy, alternative, continuity)
    assert u1 == float(res.statistic), (name, u1, res.statistic)
    expected = {"u": u1, "u2": u2, "p_value": float(res.pvalue), "method": chosen}
    if chosen == "asymptotic":
        assert math.isclose(p, float(res.pvalue), rel_tol=1e-9, abs_tol=1e-300), (name, p, res.pvalue)
        expected["z"] = z
    expected["medians"] = {"treatment": float(np.median(x)), "control": float(np.median(y))}
    if hl:
        expected["hodges_lehmann"] = hl_explicit(x, y, confidence)
    return {
        "name": name,
        "treatment": floats(x),
        "control": floats(y),
        "alternative": alternative,
        "method": method,
        "continuity": continuity,
        "confidence": confidence,
        "expected": expected,
    }


def hl_weighted(bins, cx, cy, confidence, sigma):
    """Section 7.3: weighted order statistics over bin pairs, in exact integer weights."""
    pairs = []
    for i, a in enumerate(cx):
        for j, b in enumerate(cy):
            if a and b:
                pairs.append((float(np.float64(bins[i]) - np.float64(bins[j])), int(a) * int(b)))
    pairs.sort()
    m = int(sum(cx)) * int(sum(cy))

    def kth(k):
        seen = 0
        for value, weight in pairs:
            seen += weight
            if seen >= k:
                return value
        raise AssertionError

    if m % 2:
        estimate = kth((m + 1) // 2)
    else:
        lo, hi = kth(m // 2), kth(m // 2 + 1)
        estimate = (lo + hi) / 2
    z = special.ndtri(1 - (1 - confidence) / 2)
    k = max(1, math.floor(m / 2 - z * sigma))
    return {"estimate": estimate, "ci": [kth(k), kth(m - k + 1)], "confidence": confidence}


def weighted_median(bins, counts):
    n = int(sum(counts))
    cumulative = np.cumsum(np.asarray(counts, dtype=object))

    def kth(k):
        return float(bins[int(np.searchsorted(np.asarray(cumulative, dtype=float), k))])

    if n % 2:
        return kth((n + 1) // 2)
    lo, hi = kth(n // 2), kth(n // 2 + 1)
    return (lo + hi) / 2


def histogram_case(name, bins, cx, cy, alternative, continuity=True, confidence=0.95):
    """scipy on np.repeat when that is small enough, else the checked formula."""
    bins = np.asarray(bins, float)
    total = int(sum(cx)) + int(sum(cy))
    u1, u2, z, p = formula(cx, cy, alternative, continuity)
    twice_u1, n1, n2, ties = exact_sums(cx, cy)
    sigma = sigma_from(n1, n2, ties)
    hl = hl_weighted(bins, cx, cy, confidence, sigma)
    if total <= 200_000:
        x, y = np.repeat(bins, cx), np.repeat(bins, cy)
        res = mannwhitneyu(x, y, alternative=alternative, use_continuity=continuity)
        assert u1 == float(res.statistic)
        assert math.isclose(p, float(res.pvalue), rel_tol=1e-9), (name, p, res.pvalue)
        p = float(res.pvalue)
        if int(n1) * int(n2) <= 4_000_000:
            explicit = hl_explicit(x, y, confidence)
            assert explicit == hl, (name, explicit, hl)
        assert weighted_median(bins, cx) == float(np.median(x))
    expected = {
        "u": u1,
        "u2": u2,
        "p_value": p,
        "method": "asymptotic",
        "medians": {"treatment": weighted_median(bins, cx), "control": weighted_median(bins, cy)},
        "hodges_lehmann": hl,
    }
    if z is not None:
        expected["z"] = z
    return {
        "name": name,
        "treatment": {"bins": floats(bins), "counts": [int(c) for c in cx]},
        "control": {"bins": floats(bins), "counts": [int(c) for c in cy]},
        "alternative": alternative,
        "method": "auto",
        "continuity": continuity,
        "confidence": confidence,
        "expected": expected,
    }


ALTERNATIVES = ["greater", "less", "two-sided"]


def small_exact(rng):
    cases = []
    for n1, n2 in [(3, 3), (6, 20), (20, 6), (1, 7), (8, 8), (5, 12), (12, 5), (4, 30)]:
        x = rng.normal(0.4, 1, n1).round(6)
        y = rng.normal(0, 1, n2).round(6)
        for alternative in ALTERNATIVES:
            cases.append(mwu_case(f"exact {n1}x{n2} {alternative}", x, y, alternative))
    # The shape statrs's exact p-value gets wrong (n1 < n2): 6 against 20 values.
    x = np.arange(6) + 10.5
    y = np.arange(20) + 0.25
    cases.append(mwu_case("exact 6x20 extreme greater", x, y, "greater"))
    for n1, n2 in [(10, 12), (15, 9)]:
        x = rng.normal(0.5, 1, n1).round(6)
        y = rng.normal(0, 1, n2).round(6)
        for alternative in ALTERNATIVES:
            cases.append(mwu_case(f"forced exact {n1}x{n2} {alternative}", x, y, alternative, method="exact"))
    x = rng.normal(0, 1, 12).round(6)
    y = rng.normal(0, 1, 14).round(6)
    cases.append(mwu_case("forced asymptotic 12x14 no continuity", x, y, "two-sided", "asymptotic", False))
    return cases


def exact_8x400(rng):
    x = rng.normal(0.8, 1, 8)
    y = rng.normal(0, 1, 400)
    far = rng.normal(3.5, 1, 8)
    return [mwu_case(f"exact 8x400 {a}", x, y, a) for a in ALTERNATIVES] + [
        mwu_case("exact 400x8 greater", y, x, "greater"),
        mwu_case("exact 8x400 far tail greater", far, y, "greater"),
        mwu_case("exact 400x8 far tail less", y, far, "less"),
    ]


def ties(rng):
    cases = []
    x = rng.integers(0, 6, 40).astype(float)
    y = rng.integers(0, 5, 55).astype(float)
    for a in ALTERNATIVES:
        for c in (True, False):
            cases.append(mwu_case(f"ties 40x55 {a} continuity={c}", x, y, a, continuity=c))
    x = rng.integers(0, 3, 5).astype(float)
    y = rng.integers(0, 3, 7).astype(float)
    cases.append(mwu_case("ties small auto picks asymptotic", x, y, "greater"))
    return cases


def all_tied():
    x, y = np.full(20, 3.5), np.full(30, 3.5)
    cases = [mwu_case(f"all tied {a}", x, y, a) for a in ALTERNATIVES]
    # Without continuity scipy returns NaN here; Ripcord answers p = 1.
    case = mwu_case("all tied no continuity", x, y, "greater", continuity=True)
    case["name"] = "all tied no continuity (p = 1, not scipy's NaN)"
    case["continuity"] = False
    cases.append(case)
    return cases


def binary(rng):
    cases = []
    x = (rng.random(900) < 0.03).astype(float)
    y = (rng.random(1100) < 0.012).astype(float)
    for a in ALTERNATIVES:
        for c in (True, False):
            cases.append(mwu_case(f"binary 900x1100 {a} continuity={c}", x, y, a, continuity=c))
    return cases


def lognormal(rng):
    x = rng.lognormal(np.log(120) + 0.06, 0.6, 2000)
    y = rng.lognormal(np.log(120), 0.6, 2000)
    cases = [mwu_case(f"lognormal 2000x2000 {a}", x, y, a) for a in ALTERNATIVES]
    cases.append(mwu_case("lognormal 2000x2000 greater 90%", x, y, "greater", confidence=0.9))
    return cases


def tiny(rng):
    cases = []
    x = rng.normal(3, 1, 300)
    y = rng.normal(0, 1, 300)
    for a in ALTERNATIVES:
        for c in (True, False):
            cases.append(mwu_case(f"tiny p up {a} continuity={c}", x, y, a, continuity=c))
            cases.append(mwu_case(f"tiny p down {a} continuity={c}", y, x, a, continuity=c))
    x = rng.normal(1.65, 1, 300)
    y = rng.normal(0, 1, 300)
    for a in ALTERNATIVES:
        for c in (True, False):
            cases.append(mwu_case(f"p near 1e-60 {a} continuity={c}", x, y, a, continuity=c, hl=False))
    x = rng.normal(5, 1, 600)
    y = rng.normal(0, 1, 600)
    for a in ALTERNATIVES:
        cases.append(mwu_case(f"p near 1e-190 {a}", x, y, a, hl=False))
    return cases


def histograms(rng):
    cases = []
    bins = np.round(np.exp(np.linspace(np.log(1), np.log(5000), 120)), 9)
    # Checked against scipy on the expansion:
    small_x = rng.multinomial(2500, np.bincount(rng.integers(30, 90, 3000), minlength=120) / 3000)
    small_y = rng.multinomial(3000, np.bincount(rng.integers(28, 88, 3000), minlength=120) / 3000)
    for a in ALTERNATIVES:
        cases.append(histogram_case(f"histogram 120 bins {a}", bins, small_x, small_y, a))
    cases.append(histogram_case("histogram 120 bins no continuity", bins, small_x, small_y, "greater", False))
    # Millions of counts per bin: the checked formula (scipy cannot expand these).
    # Same shape in both arms plus a few thousand extra counts, so z stays moderate.
    big_x = [int(c) * 2_000_003 + int(e) for c, e in zip(small_x, rng.integers(0, 4000, 120))]
    big_y = [int(c) * 1_900_007 + int(e) for c, e in zip(small_x, rng.integers(0, 4000, 120))]
    for a in ALTERNATIVES:
        cases.append(histogram_case(f"histogram millions per bin {a}", bins, big_x, big_y, a))
    # A binary metric as a two-bin histogram, with a tie group > 2.64e6 (t^3 overflows u64).
    cases.append(histogram_case("binary histogram 5e6", [0.0, 1.0], [4_850_000, 150_000], [4_851_500, 148_500], "greater"))
    return cases


def main():
    rng = np.random.default_rng(20260505)
    os.makedirs(OUT, exist_ok=True)
    families = {
        "small_exact": small_exact(rng),
        "exact_8x400": exact_8x400(rng),
        "ties": ties(rng),
        "all_tied": all_tied(),
        "binary": binary(rng),
        "lognormal": lognormal(rng),
        "tiny_p": tiny(rng),
        "histograms": histograms(rng),
    }
    for name, cases in families.items():
        path = os.path.join(OUT, f"{name}.json")
        with open(path, "w") as f:
            json.dump({"generator": "scripts/gen-stats-fixtures.py", "cases": cases}, f, separators=(",", ":"))
            f.write("\n")
        print(f"{path}: {len(cases)} cases")


if __name__ == "__main__":
    main()
