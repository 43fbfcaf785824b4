#!/usr/bin/env python3
"""Load for scripts/bench-hostile.sh: what large imports and concurrent judge requests do to
the OFREP evaluations a server answers meanwhile. Standard library only.

  bench-hostile.py import BASE ADMIN_KEY SERVER_KEY MEGABYTES
      Imports a valid YAML document of about MEGABYTES, then a 200 KB document nested
      100,000 levels deep, while one client evaluates a flag back to back on a kept-alive
      connection. Prints each import's status and duration, and the evaluations' latency
      while it ran (count, p50, p99, max).

  bench-hostile.py judge BASE SERVER_KEY PID CLIENTS VALUES
      CLIENTS clients each send one judge request of two samples of VALUES values, and send
      it again after Retry-After while it is refused, until every one is judged; meanwhile
      one client evaluates a flag back to back. Prints the statuses, the evaluations'
      latency, and the server's peak resident memory (VmHWM of PID).
"""
import http.client
import os
import json
import random
import sys
import threading
import time
from urllib.parse import urlparse


TRACE = bool(os.environ.get("TRACE"))


def connect(base):
    url = urlparse(base)
    return http.client.HTTPConnection(url.hostname, url.port, timeout=600)


def request(connection, method, path, key, body=b"", content_type="application/json"):
    headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type}
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()


class Evaluations(threading.Thread):
    """Evaluates `checkout` back to back until stopped, keeping every latency in ms."""

    def __init__(self, base, key):
        super().__init__(daemon=True)
        self.base, self.key = base, key
        self.latencies = []
        self.running = threading.Event()
        self.stopped = threading.Event()
        self.failures = 0
        self.trace = 0

    def run(self):
        connection = connect(self.base)
        body = json.dumps({"context": {"targetingKey": "user-1"}}).encode()
        while not self.stopped.is_set():
            # An evaluation counts in the window it was sent in, however late it returns.
            counted = self.running.is_set()
            began = time.perf_counter()
            try:
                status, _, _ = request(connection, "POST", "/ofrep/v1/evaluate/flags/checkout", self.key, body)
            except (ConnectionError, http.client.HTTPException):
                status = None
                connection.close()
                connection = connect(self.base)
            elapsed = (time.perf_counter() - began) * 1000
            if status != 200:
                self.failures += 1
            if counted:
                self.latencies.append(elapsed)
                if elapsed > 15 and self.trace:
                    print(f"    slow: {elapsed:.1f} ms at {time.perf_counter() - self.trace:.2f} s")

    def window(self):
        """Latencies from now until the returned function is called."""
        self.latencies = []
        self.running.set()

        def close():
            self.running.clear()
            # The evaluation in flight, sent inside the window, lands in it.
            time.sleep(0.2)
            return list(self.latencies)

        return close


def summary(latencies):
    if not latencies:
        return "no evaluation completed"
    ordered = sorted(latencies)
    at = lambda share: ordered[min(len(ordered) - 1, int(share * len(ordered)))]
    return (f"{len(ordered)} evaluations, p50 {at(0.5):.2f} ms, p99 {at(0.99):.2f} ms, "
            f"max {ordered[-1]:.2f} ms")


def large_yaml(megabytes):
    lines = ["flags:", "  checkout:", "    type: boolean",
             '    variants: {"on": true, "off": false}', '    default_variant: "on"']
    size, index = 0, 0
    target = megabytes * 1024 * 1024
    while size < target:
        flag = "\n".join([
            f"  flag-{index:06d}:",
            f'    description: "flag number {index}, with a description long enough to be realistic"',
            "    type: string",
            '    variants: {a: "alpha", b: "beta", c: "gamma"}',
            "    default_variant: a",
            "    rules:",
            "      - when: [{attribute: country, op: in, values: [de, fr, it, es, nl, be, at, ch, pl, cz]}]",
            "        serve: {variant: b}",
            "      - when: [{attribute: plan, op: eq, values: [pro]}, {attribute: version, op: semver_gte, values: [\"2.1.0\"]}]",
            "        serve: {variant: c}",
            "      - when: [{attribute: userId, op: in, values: [" + ", ".join(f"user-{index}-{n:03d}" for n in range(80)) + "]}]",
            "        serve: {variant: c}",
            "    rollout: {percentage: 25, split: [{variant: b, weight: 1}, {variant: c, weight: 3}]}",
        ])
        lines.append(flag)
        size += len(flag) + 1
        index += 1
    return ("\n".join(lines) + "\n").encode(), index


def run_import(base, admin_key, server_key, megabytes):
    evaluations = Evaluations(base, server_key)
    evaluations.start()
    time.sleep(0.5)
    document, flags = large_yaml(megabytes)
    close = evaluations.window()
    time.sleep(5)
    print(f"no import, 5 s: {summary(close())}")
    deep = ("flags: " + "[" * 100_000 + "]" * 100_000 + "\n").encode()
    for label, body in [(f"{len(document) / 1048576:.1f} MiB, {flags} flags", document),
                        (f"{len(deep) // 1024} KB nested 100,000 deep", deep)]:
        connection = connect(base)
        close = evaluations.window()
        began = time.perf_counter()
        evaluations.trace = began if TRACE else 0
        status, _, answer = request(connection, "PUT", "/api/v1/environments/default/document",
                                    admin_key, body, "application/yaml")
        took = time.perf_counter() - began
        latencies = close()
        print(f"import {label}: {status} in {took * 1000:.0f} ms ({answer[:100].decode(errors='replace')})")
        print(f"  meanwhile: {summary(latencies)}")
        time.sleep(0.5)
    evaluations.stopped.set()
    if evaluations.failures:
        print(f"  {evaluations.failures} evaluations failed")


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def run_judge(base, server_key, pid, clients, values):
    rng = random.Random(7)
    treatment = ",".join(f"{rng.lognormvariate(3, 0.5):.6f}" for _ in range(values))
    control = ",".join(f"{rng.lognormvariate(3, 0.5):.6f}" for _ in range(values))
    body = f'{{"treatment": [{treatment}], "control": [{control}], "tolerance": "5%"}}'.encode()
    print(f"judge: {clients} clients, {values} values per sample, {len(body) / 1048576:.1f} MiB per request")
    evaluations = Evaluations(base, server_key)
    evaluations.start()
    time.sleep(0.5)
    statuses = {}
    lock = threading.Lock()

    def client():
        connection = connect(base)
        while True:
            status, headers, _ = request(connection, "POST", "/api/v1/judge", server_key, body)
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
            if status != 503:
                return
            connection.close()
            time.sleep(float(headers.get("Retry-After", headers.get("retry-after", "1"))))
            connection = connect(base)

    close = evaluations.window()
    began = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.perf_counter() - began
    latencies = close()
    evaluations.stopped.set()
    print(f"  all judged in {took:.1f} s; answers: {dict(sorted(statuses.items()))}")
    print(f"  meanwhile: {summary(latencies)}")
    print(f"  peak resident memory: {peak_rss_kib(pid) / 1024:.0f} MiB")


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "import":
        run_import(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    elif mode == "judge":
        run_judge(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    else:
        sys.exit(__doc__)
