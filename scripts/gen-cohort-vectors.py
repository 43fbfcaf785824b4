#!/usr/bin/env python3
"""Adds the cohort cases to spec/bucketing.json, from the rules of docs/bucketing.md
("Cohorts") written out again here, independently of the engine.

For a sample of the file's units and for each control design, it walks the threshold from
1 to 99,999 and keeps the thresholds at which the unit changes cohort (and the one before),
so that every band edge of every design is pinned, plus one threshold at random.
Run from the repository root: python3 scripts/gen-cohort-vectors.py
"""
import json
import random

BUCKETS = 100_000
DESIGNS = ["rest", "equal", 2, 0.5, 3.25]


def control_size(threshold, control):
    left = BUCKETS - threshold
    if control == "rest":
        return left
    thousandths = 1000 if control == "equal" else round(control * 1000)
    return min(threshold * thousandths // 1000, left)


def cohort(bucket, threshold, control):
    if threshold >= BUCKETS:
        return None  # at 100% nobody is left to compare with
    if bucket < threshold:
        return "treatment"
    size = control_size(threshold, control)
    low = max(threshold, BUCKETS // 2)
    start, end = (low, low + size) if size <= BUCKETS - low else (BUCKETS - size, BUCKETS)
    return "control" if start <= bucket < end else None


def main():
    path = "spec/bucketing.json"
    spec = json.load(open(path, encoding="utf-8"))
    rng = random.Random(0x5EED)
    units = rng.sample(spec["cases"], 30)
    cases = []
    for index, case in enumerate(units):
        bucket = case["rollout_bucket"]
        # Six designs over thirty units: each unit is checked under two of them.
        for control in (DESIGNS[index % len(DESIGNS)], DESIGNS[(index + 2) % len(DESIGNS)]):
            thresholds = set()
            previous = cohort(bucket, 1, control)
            for threshold in range(2, BUCKETS):
                now = cohort(bucket, threshold, control)
                if now != previous:
                    thresholds.update((threshold - 1, threshold))
                previous = now
            thresholds.add(rng.randrange(1, BUCKETS))
            for threshold in sorted(thresholds):
                cases.append({
                    "salt": case["salt"],
                    "unit": case["unit"],
                    "rollout_bucket": bucket,
                    "percentage": threshold / 1000,
                    "control": control,
                    "cohort": cohort(bucket, threshold, control),
                })
    # At 100% there are no cohorts, whatever the design.
    cases.append({**{k: units[0][k] for k in ("salt", "unit", "rollout_bucket")},
                  "percentage": 100, "control": "rest", "cohort": None})
    spec["cohorts"] = cases
    with open(path, "w", encoding="utf-8") as out:
        json.dump(spec, out, indent=1, ensure_ascii=False)
        out.write("\n")
    kinds = {}
    for case in cases:
        key = (str(case["control"]), case["cohort"])
        kinds[key] = kinds.get(key, 0) + 1
    print(len(cases), "cohort cases:", kinds)


if __name__ == "__main__":
    main()
