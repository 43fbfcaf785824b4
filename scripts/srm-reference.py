#!/usr/bin/env python3
"""Reference values for the sample-ratio-mismatch tests in engine/src/stats/srm.rs.

Evaluates ln BF of docs/statistics.md, "Sample-ratio mismatch", straight from its
definition with log-gamma functions, independently of the engine's rearranged form:

    ln BF = lnB(a·π + T, a·(1−π) + C) − lnB(a·π, a·(1−π)) − T·ln π − C·ln(1−π)
    a     = max(1, (1−π)/(δ²·π)),  δ = 0.1

Run from the repository root:  python3 scripts/srm-reference.py
With mpmath installed it works at 50 significant digits; without it, it falls back to
math.lgamma, whose rounding (about 1e-10 absolute at these counts) still agrees with the
tests' 1e-9 relative tolerance.
"""

import math

try:
    import mpmath

    mpmath.mp.dps = 50
    log, loggamma, number = mpmath.log, mpmath.loggamma, mpmath.mpf
except ImportError:
    log, loggamma, number = math.log, math.lgamma, float

DELTA = 0.1


def concentration(share):
    # Computed in f64 exactly as the engine does, so both use the same a.
    return max(1.0, (1.0 - share) / (DELTA * DELTA * share))


def log_beta(x, y):
    return loggamma(x) + loggamma(y) - loggamma(x + y)


def log_bayes_factor(treatment, control, share):
    a = number(concentration(share))
    p = number(share)
    return (
        log_beta(a * p + treatment, a * (1 - p) + control)
        - log_beta(a * p, a * (1 - p))
        - treatment * log(p)
        - control * log(1 - p)
    )


CASES = [
    # balanced A/A at an equal control
    (5000, 5000, 0.5),
    # a 1% stage after 45 minutes at 2,000 observations a minute, 10% of the treatment lost
    (810, 89100, 0.01),
    # the same stage after 60 minutes
    (1080, 118800, 0.01),
    # a second stage at 5% with 6% of the treatment lost
    (4700, 95000, 0.05),
    # the running maximum: a clear mismatch, then a look where it fades
    (400, 600, 0.5),
    (1100, 1000, 0.5),
]

if __name__ == "__main__":
    for treatment, control, share in CASES:
        value = log_bayes_factor(treatment, control, share)
        print(f"{treatment:>6} {control:>7} {share:<5} ln BF = {float(value)!r}")
