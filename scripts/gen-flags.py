#!/usr/bin/env python3
"""Writes a flag document of N flags (JSON) for the load and memory benchmarks.

Flags mix what real environments hold: static switches, flags with targeting rules over
segments, and percentage rollouts with multi-variant splits. The first 50 flags are client
visible, so a client key's bulk evaluation returns 50 flags. Usage: gen-flags.py N > flags.json
"""
import json
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
document = {
    "segments": {
        "beta-track": {"when": [{"attribute": "releaseTrack", "op": "in", "values": ["beta", "canary"]}]},
        "staff": {"when": [{"attribute": "email", "op": "ends_with", "values": ["@example.com"]}]},
    },
    "flags": {},
}
for i in range(n):
    key = f"flag-{i:05d}"
    kind = i % 4
    flag = {
        "description": f"benchmark flag {i}",
        "type": "boolean",
        "variants": {"on": True, "off": False},
        "default_variant": "off",
        "client_visible": i < 50,
    }
    if kind >= 1:
        flag["rules"] = [
            {"name": "staff", "segment": "staff", "serve": {"variant": "on"}},
            {
                "name": "new app versions in CA",
                "when": [
                    {"attribute": "country", "op": "in", "values": ["CA", "US", "MX"]},
                    {"attribute": "appVersion", "op": "semver_gte", "values": ["3.2.0"]},
                    {"attribute": "plan", "op": "eq", "values": ["premium"]},
                ],
                "serve": {"variant": "on"},
            },
        ]
    if kind >= 2:
        flag["rollout"] = {"stickiness": "userId", "percentage": 25, "split": [{"variant": "on", "weight": 1}]}
    if kind == 3:
        flag["type"] = "string"
        flag["variants"] = {"control": "blue", "green": "green", "red": "red"}
        flag["default_variant"] = "control"
        flag["rules"][0]["serve"]["variant"] = "green"
        flag["rules"][1]["serve"]["variant"] = "red"
        flag["rollout"] = {
            "stickiness": "userId",
            "percentage": 50,
            "split": [{"variant": "green", "weight": 1}, {"variant": "red", "weight": 1}],
        }
    document["flags"][key] = flag
json.dump(document, sys.stdout)
