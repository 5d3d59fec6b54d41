#!/usr/bin/env python3
"""A real Prometheus (Debian's, native histograms enabled) scrapes a `tally serve`.

    Tests/integrations/prometheus-test.py --tally .build/debug/tally [--prometheus /usr/bin/prometheus]

Events sent between two scrapes must show in PromQL as Tally counts them: `sum(increase(...))` over
exactly those two scrapes equals Tally's own count, per operation too, and `histogram_quantile` over
the native histogram agrees with Tally's p50 and p99 within one sketch bucket. `promtool check
metrics` accepts the text exposition.
"""
import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from tallynode import KEY, TallyNode, check, free_port

OPERATIONS = ["GET /cart", "POST /pay", "GET /item/:id"]
STATUSES = [200, 200, 200, 404, 503]


def check_quiet(condition, message):
    if not condition:
        raise AssertionError(message)


def post_events(node, events):
    for start in range(0, len(events), 500):
        body = json.dumps(events[start:start + 500]).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{node.port}/v1/events", data=body, method="POST")
        request.add_header("Authorization", f"Bearer {KEY}")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
            assert answer["rejected_count"] == 0, answer


class Prometheus:
    def __init__(self, binary, target_port):
        self.dir = tempfile.mkdtemp(prefix="tally-prom.")
        self.port = free_port()
        with open(os.path.join(self.dir, "prometheus.yml"), "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
  - job_name: tally
    metrics_path: /v1/export/prometheus
    authorization:
      credentials: {KEY}
    static_configs:
      - targets: ["127.0.0.1:{target_port}"]
  - job_name: tally-node
    metrics_path: /metrics
    authorization:
      credentials: {KEY}
    static_configs:
      - targets: ["127.0.0.1:{target_port}"]
""")
        self.log = open(os.path.join(self.dir, "prometheus.log"), "wb")
        self.process = subprocess.Popen(
            [binary, f"--config.file={self.dir}/prometheus.yml", f"--storage.tsdb.path={self.dir}/data",
             f"--web.listen-address=127.0.0.1:{self.port}", "--enable-feature=native-histograms"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def api(self, path, **params):
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        return answer["data"]

    def wait_ready(self):
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("prometheus did not come up:\n" + self.tail())

    def samples(self, expr, window="2m"):
        """The raw samples of `expr[window]`, one list of (time, value) per series."""
        result = self.api("query", query=f"{expr}[{window}]")["result"]
        return [[(float(t), float(v)) for t, v in series["values"]] for series in result]

    def scrape_times(self):
        """Timestamps of the stored scrapes of the requests counter (every series is scraped at once)."""
        series = self.samples("tally_requests_total")
        return sorted({t for values in series for t, _ in values})

    def value(self, expr, at):
        result = self.api("query", query=expr, time=f"{at:.3f}")["result"]
        return {json.dumps(item["metric"], sort_keys=True): float(item["value"][1]) for item in result}

    def tail(self):
        with open(os.path.join(self.dir, "prometheus.log"), "rb") as f:
            return f.read().decode(errors="replace")[-3000:]

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tally", default=".build/debug/tally")
    parser.add_argument("--prometheus", default="/usr/bin/prometheus")
    parser.add_argument("--promtool", default="/usr/bin/promtool")
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    args = parser.parse_args()
    print(f"prometheus test: seed {args.seed}")
    rng = random.Random(args.seed)
    node = TallyNode(args.tally).start()
    prometheus = None
    try:
        now_ms = int(time.time() * 1000)
        # Every series exists before the first scrape, so increase() sees each one from its start.
        seed_events = [{"service": "shop", "operation": op, "status": status, "latency": 1000,
                        "timestamp": now_ms - 600_000} for op in OPERATIONS for status in set(STATUSES)]
        post_events(node, seed_events)
        text = node.get("/v1/export/prometheus")
        lint = subprocess.run([args.promtool, "check", "metrics"], input=text, capture_output=True)
        # The one lint allowed: latency is in microseconds, not seconds, because the sketch's bucket
        # boundaries are powers of the base in microseconds (docs/integrations.md).
        problems = [line for line in (lint.stdout + lint.stderr).decode().splitlines()
                    if line.strip() and 'use base unit "seconds" instead of "microseconds"' not in line]
        check(not problems and b"tally_requests_total{" in text,
              f"promtool check metrics parses the text exposition (problems: {problems[:3]})")

        prometheus = Prometheus(args.prometheus, node.port)
        prometheus.wait_ready()
        deadline = time.time() + 60
        while len(prometheus.scrape_times()) < 2:
            if time.time() > deadline:
                raise RuntimeError("no scrapes:\n" + prometheus.tail())
            time.sleep(0.5)
        before = prometheus.scrape_times()[-1]
        # The burst: log-uniform latencies, 1 ms to 3 s, timestamped after the last scrape.
        burst_start_ms = int(time.time() * 1000)
        events = []
        expected = {}
        for _ in range(5_000):
            op = rng.choice(OPERATIONS)
            status = rng.choice(STATUSES)
            events.append({"service": "shop", "operation": op, "status": status,
                           "latency": round(10 ** rng.uniform(3, 6.5)), "timestamp": burst_start_ms})
            expected[op] = expected.get(op, 0) + 1
        post_events(node, events)
        total = len(seed_events) + len(events)
        deadline = time.time() + 60
        while True:
            current = prometheus.value("sum(tally_requests_total)", time.time())
            if current and list(current.values())[0] == total:
                break
            if time.time() > deadline:
                raise RuntimeError(f"the burst never showed in Prometheus: {current}")
            time.sleep(0.5)
        after = prometheus.scrape_times()[-1]
        window = f"{round((after - before) * 1000)}ms"
        # A range whose first and last samples are the scrapes before and after the burst:
        # increase() is then last minus first, with nothing extrapolated.
        increase = prometheus.value(f"sum(increase(tally_requests_total[{window}]))", after)
        tally_total = node.query(service="shop", metrics="count", **{"from": str(burst_start_ms - 1)})
        tally_count = sum(p["values"]["count"] for g in tally_total["groups"] for p in g["points"])
        check(tally_count == len(events), f"Tally counts the {len(events)} events of the burst")
        check(list(increase.values()) == [float(tally_count)],
              f"sum(increase(tally_requests_total[{window}])) = {list(increase.values())} = Tally's {tally_count}")
        by_operation = prometheus.value(f"sum by (operation) (increase(tally_requests_total[{window}]))", after)
        got = {json.loads(k)["operation"]: v for k, v in by_operation.items()}
        check(got == {op: float(n) for op, n in expected.items()}, f"per operation too: {got}")

        answer = node.query(service="shop", metrics="p50,p99", **{"from": str(burst_start_ms - 1)})
        values = answer["groups"][0]["points"][0]["values"]
        gamma = 2 ** (1 / 64)
        for q, name in [(0.5, "p50"), (0.99, "p99")]:
            result = prometheus.value(
                f"histogram_quantile({q}, sum(increase(tally_request_duration_microseconds[{window}])))", after)
            promql = list(result.values())[0]
            # Both land in the same sketch bucket, (γ^i, γ^(i+1)] µs: Prometheus interpolates inside
            # it, Tally reports its midpoint. A bucket index off by one would land in the next one.
            index = math.floor(math.log2(values[name]) * 64)
            low, high = gamma ** index, gamma ** (index + 1)
            check(low * (1 - 1e-9) <= promql <= high * (1 + 1e-9),
                  f"histogram_quantile({q}) over the native histogram = {promql:.0f} us, Tally's {name} {values[name]:.0f} us: the same sketch bucket")
        # The Grafana dashboard's queries: every one is valid PromQL, and the RED and heatmap ones
        # have data for the service the burst went to.
        dashboard = json.load(open(os.path.join(os.path.dirname(__file__), "../../deploy/grafana/tally-dashboard.json")))
        queried = 0
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"].replace("$service", "shop").replace("$__rate_interval", "1m")
                result = prometheus.api("query", query=expr, time=f"{after:.3f}")["result"]
                queried += 1
                if "tally_request" in expr and "errors" not in expr:
                    check_quiet(result, f"dashboard panel '{panel['title']}' has data: {expr}")
        check(queried >= 8, f"the dashboard's {queried} queries are valid PromQL, the RED and heatmap ones with data")
        # The node's own /metrics, scraped by the same Prometheus: every family accepted (a name
        # Prometheus refuses fails the whole scrape), the histograms and the HTTP middleware's there.
        up = prometheus.value('up{job="tally-node"}', after)
        check(list(up.values()) == [1.0], f"Prometheus scrapes the node's /metrics: up = {list(up.values())}")
        acknowledged = prometheus.value('tally_ingest_acknowledgement_seconds_count{job="tally-node"}', after)
        check(acknowledged and list(acknowledged.values())[0] >= 1,
              f"the acknowledgement histogram counts the batches posted: {list(acknowledged.values())}")
        http = prometheus.value('sum(tally_http_requests_total{job="tally-node"})', after)
        check(http and list(http.values())[0] > 0, f"Hummingbird's request counter lands in /metrics: {list(http.values())}")
        own = node.get("/metrics")
        lint = subprocess.run([args.promtool, "check", "metrics"], input=own, capture_output=True)
        # Hummingbird's middleware registers its metrics without help texts (swift-metrics has none).
        problems = [line for line in (lint.stdout + lint.stderr).decode().splitlines()
                    if line.strip() and not line.endswith("no help text")]
        check(not problems, f"promtool check metrics on the node's /metrics: nothing but missing help texts ({problems[:3]})")
        print("prometheus test: passed")
    except BaseException:
        print(node.tail(), file=sys.stderr)
        if prometheus:
            print(prometheus.tail(), file=sys.stderr)
        raise
    finally:
        if prometheus:
            prometheus.stop()
        node.cleanup()


if __name__ == "__main__":
    main()
