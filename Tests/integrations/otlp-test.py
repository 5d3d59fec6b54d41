#!/usr/bin/env python3
"""OTLP/HTTP from OpenTelemetry's own Python SDK and exporter into a real `tally serve`.

    Tests/integrations/otlp-test.py --tally .build/debug/tally [--seed N]

1. Spans exported (protobuf, gzip) are counted exactly, by route and status class; SERVER spans
   only (CLIENT and INTERNAL are skipped); p50, p90 and p99 agree with the exact quantiles of the
   latencies sent within the sketch's error.
2. A retried export, and the same spans batched differently, are counted once.
3. A node killed with SIGKILL three times while an exporter retries every failed export (as a
   Collector's queue does) ends with every span counted exactly once.
4. A wrong API key is refused (the exporter reports failure), and nothing is counted.
5. Metrics: `http.server.request.duration` histograms from the SDK's meter, exponential and
   cumulative (the SDK's default temporality) and explicit-bucket deltas: every request counted
   once across repeated exports and a kill -9 between them, quantiles within the SDK's bucket.
"""
import argparse
import random
import sys
import threading
import time

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from tallynode import KEY, TallyNode, check, free_port

ROUTES = ["/cart", "/cart/:id", "/pay"]
STATUSES = [200, 200, 200, 201, 404, 503]


def make_spans(count, seed, service):
    """Finished spans from the SDK itself, with exact start and end times; and what Tally should count."""
    rng = random.Random(seed)
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tally-otlp-test")
    expected = {}
    latencies = []
    end_base = time.time_ns() - 30_000_000_000
    for index in range(count):
        kind = rng.choice([SpanKind.SERVER] * 8 + [SpanKind.CLIENT, SpanKind.INTERNAL])
        route = rng.choice(ROUTES)
        status = rng.choice(STATUSES)
        # Log-uniform latencies from 1 ms to 2 s.
        latency_ns = int(10 ** rng.uniform(6, 9.3))
        end = end_base + index * 1_000_000
        span = tracer.start_span(f"GET {route}", kind=kind, start_time=end - latency_ns,
                                 attributes={"http.route": route, "http.response.status_code": status,
                                             "enduser.id": f"user-{rng.randrange(50)}"})
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=end)
        if kind == SpanKind.SERVER:
            key = (route, f"{status // 100}xx")
            expected[key] = expected.get(key, 0) + 1
            latencies.append(latency_ns / 1000)
    return list(memory.get_finished_spans()), expected, latencies


def counted(node, service):
    answer = node.query(service=service, group_by="operation,status", metrics="count")
    out = {}
    for group in answer["groups"]:
        total = sum(point["values"]["count"] for point in group["points"])
        if total:
            out[(group["operation"], group["status"])] = total
    return out


def exporter(port, **kwargs):
    return OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces",
                            headers={"Authorization": f"Bearer {KEY}"}, timeout=5, **kwargs)


def export_all(exp, spans, batch):
    for start in range(0, len(spans), batch):
        result = exp.export(spans[start:start + batch])
        check_silent(result == SpanExportResult.SUCCESS, f"export of spans {start}.. succeeded")


def check_silent(condition, message):
    if not condition:
        raise AssertionError(message)


def meter(port, service, delta=False, exponential=True):
    exporter = OTLPMetricExporter(
        endpoint=f"http://127.0.0.1:{port}/v1/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=5,
        preferred_temporality={Histogram: AggregationTemporality.DELTA} if delta else None)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    views = [View(instrument_name="http.server.request.duration", aggregation=ExponentialBucketHistogramAggregation())] \
        if exponential else []
    provider = MeterProvider(resource=Resource.create({"service.name": service}), metric_readers=[reader], views=views)
    histogram = provider.get_meter("tally-otlp-test").create_histogram("http.server.request.duration", unit="s")
    return provider, histogram


def metrics(node, port, seed):
    rng = random.Random(seed + 10)
    provider, histogram = meter(port, "inventory")
    expected = {}
    values = []

    def record(count):
        for _ in range(count):
            route = rng.choice(ROUTES)
            status = rng.choice(STATUSES)
            value = 10 ** rng.uniform(-3, 0.3)  # 1 ms to 2 s, in seconds
            histogram.record(value, {"http.route": route, "http.response.status_code": status})
            key = (route, f"{status // 100}xx")
            expected[key] = expected.get(key, 0) + 1
            values.append(value * 1e6)

    record(1_500)
    check(provider.force_flush(), "the SDK exported its cumulative exponential histograms")
    check(counted(node, "inventory") == expected, f"{sum(expected.values())} requests of cumulative points counted exactly")
    record(700)
    provider.force_flush()
    provider.force_flush()  # the same totals again: nothing new
    check(counted(node, "inventory") == expected, "the next cumulative totals add only the new 700; a resend adds nothing")
    node.kill9()
    node.start()
    provider.force_flush()  # after a restart of Tally, the same totals: still nothing new
    record(300)
    provider.force_flush()
    check(counted(node, "inventory") == expected,
          f"across a kill -9, {sum(expected.values())} requests: nothing counted twice, nothing lost")
    answer = node.query(service="inventory", metrics="p50,p99")
    got = answer["groups"][0]["points"][0]["values"]
    values.sort()
    for name, q in [("p50", 0.5), ("p99", 0.99)]:
        exact = values[int(q * len(values))]
        # The SDK picks its scale to fit 160 buckets over the range (scale 3 here: buckets 9% wide).
        check(abs(got[name] - exact) / exact < 0.06, f"metrics {name} {got[name]:.0f} us, exact {exact:.0f} us")
    provider.shutdown()

    delta_provider, delta_histogram = meter(port, "inventory-delta", delta=True, exponential=False)
    for index in range(400):
        delta_histogram.record(0.01 * (1 + index % 7), {"http.route": "/d", "http.response.status_code": 200})
    delta_provider.force_flush()
    for index in range(100):
        delta_histogram.record(0.2, {"http.route": "/d", "http.response.status_code": 503})
    delta_provider.force_flush()
    check(counted(node, "inventory-delta") == {("/d", "2xx"): 400, ("/d", "5xx"): 100},
          "explicit-bucket delta histograms (the SDK's default aggregation) counted exactly")
    delta_provider.shutdown()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tally", default=".build/debug/tally")
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    args = parser.parse_args()
    print(f"otlp test: seed {args.seed}")
    otlp_port = free_port()
    node = TallyNode(args.tally, extra_yaml=f"otlp:\n  listen: 127.0.0.1:{otlp_port}\n").start()
    try:
        # 1. Counts, kinds and quantiles.
        spans, expected, latencies = make_spans(2_000, args.seed, "checkout")
        export_all(exporter(otlp_port, compression=Compression.Gzip), spans, 100)
        check(counted(node, "checkout") == expected,
              f"{sum(expected.values())} SERVER spans of {len(spans)} counted exactly by route and status class")
        answer = node.query(service="checkout", metrics="count,p50,p90,p99")
        values = answer["groups"][0]["points"][0]["values"]
        latencies.sort()
        for name, q in [("p50", 0.50), ("p90", 0.90), ("p99", 0.99)]:
            # The sketch's relative error is 0.54%; allow the rank to land one sample either side.
            low = latencies[max(0, int(q * len(latencies)) - 2)] * 0.99
            high = latencies[min(len(latencies) - 1, int(q * len(latencies)) + 1)] * 1.01
            check(low <= values[name] <= high, f"{name} {values[name]:.0f} us within the sketch's error of "
                  f"the exact {latencies[int(q * len(latencies))]:.0f} us")
        check(node.metric("tally_otlp_spans_total", '{outcome="skipped"}') == len(spans) - sum(expected.values()),
              "CLIENT and INTERNAL spans skipped, and counted as skipped")

        # 2. Retries, and the same spans batched differently, count once.
        plain = exporter(otlp_port)
        export_all(plain, spans[:500], 50)
        export_all(plain, spans[250:750], 500)
        check(counted(node, "checkout") == expected, "a retried export and re-batched spans are counted once")
        check(node.metric("tally_ingest_events_duplicate_total") > 0, "duplicates are counted in /metrics")

        # 3. kill -9 three times while an exporter retries every failed export.
        spans2, expected2, _ = make_spans(3_000, args.seed + 1, "payments")
        done = threading.Event()
        failures = [0]

        def export_forever():
            exp = exporter(otlp_port)
            rng = random.Random(args.seed)
            start = 0
            while start < len(spans2):
                size = rng.choice([20, 50, 100])
                batch = spans2[start:start + size]
                while exp.export(batch) != SpanExportResult.SUCCESS:
                    failures[0] += 1
                    time.sleep(0.05)
                start += size
                time.sleep(0.02)  # about 4 s in all: the kills land mid-stream
            done.set()

        worker = threading.Thread(target=export_forever, daemon=True)
        worker.start()
        rng = random.Random(args.seed + 2)
        kills = 0
        for _ in range(3):
            time.sleep(rng.uniform(0.2, 0.8))
            if done.is_set():
                break
            node.kill9()
            kills += 1
            node.start()
        worker.join(timeout=300)
        check(done.is_set(), "the exporter finished")
        # The exporter retries connection errors itself; `failures` counts the exports it gave up on.
        check(kills == 3, f"the node was killed {kills} times while the exporter was sending")
        check(counted(node, "payments") == expected2,
              f"{sum(expected2.values())} spans counted exactly once across kill -9 restarts "
              f"({failures[0]} failed exports retried)")
        check(counted(node, "checkout") == expected, "spans before the restarts are all still counted")

        # 4. A wrong key is refused.
        wrong = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{otlp_port}/v1/traces",
                                 headers={"Authorization": "Bearer wrong"}, timeout=5)
        spans3, _, _ = make_spans(50, args.seed + 3, "intruder")
        check(wrong.export(spans3) == SpanExportResult.FAILURE, "an export with a wrong API key fails")
        check(counted(node, "intruder") == {}, "and nothing of it is counted")
        metrics(node, otlp_port, args.seed)
        print("otlp test: passed")
    except BaseException:
        print(node.tail(), file=sys.stderr)
        raise
    finally:
        node.cleanup()


if __name__ == "__main__":
    main()
