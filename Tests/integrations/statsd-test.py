#!/usr/bin/env python3
"""StatsD and DogStatsD from the `statsd` and `datadog` Python clients into a real `tally serve`.

    Tests/integrations/statsd-test.py --tally .build/debug/tally [--seed N]

Timers, histograms and distributions count as requests with their latency; counters (with
sample rates) as requests without one; sets as distinct users; DogStatsD tags name the service,
operation and status. Over UDP (one metric per datagram, and pipelined into one) and TCP. Junk
datagrams and malformed lines are counted and skipped, and the lines around them still count.
"""
import argparse
import random
import socket
import sys
import time

import statsd
from datadog.dogstatsd.base import DogStatsd

from tallynode import TallyNode, check, free_port


def wait_for(predicate, what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def counts(node, service, group_by="operation,status", metrics="count"):
    answer = node.query(service=service, group_by=group_by, metrics=metrics)
    out = {}
    for group in answer["groups"]:
        key = tuple(group[name] for name in group_by.split(","))
        values = {}
        for point in group["points"]:
            for name, value in point["values"].items():
                if value is not None:
                    values[name] = values.get(name, 0) + value if name in ("count", "unique_users") else value
        if values.get("count", 0) or values.get("unique_users", 0):
            out[key] = values
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tally", default=".build/debug/tally")
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    args = parser.parse_args()
    print(f"statsd test: seed {args.seed}")
    rng = random.Random(args.seed)
    udp_port = free_port(socket.SOCK_DGRAM)
    tcp_port = free_port()
    node = TallyNode(args.tally, extra_yaml=f"statsd:\n  udp: 127.0.0.1:{udp_port}\n  tcp: 127.0.0.1:{tcp_port}\n").start()
    try:
        # statsd: timers (one per datagram), counters with a sample rate, a set; a pipeline.
        client = statsd.StatsClient("127.0.0.1", udp_port)
        latencies = [round(10 ** rng.uniform(0, 3.5), 3) for _ in range(400)]
        for value in latencies:
            client.timing("shop.checkout", value)
        for _ in range(5):
            client.incr("shop.login")
        # The client samples itself: at rate 0.5 it sends about one call in two, each "10|c|@0.5",
        # which stands for 20 requests. Count what it really sent.
        sent = []
        send = client._send
        client._send = lambda data: (sent.append(data), send(data))
        for _ in range(20):
            client.incr("shop.login", 10, rate=0.5)
        client._send = send
        sampled = sum(1 for data in sent if data.startswith("shop.login:10|c|@0.5"))
        users = [f"user-{rng.randrange(60)}" for _ in range(300)]
        for user in users:
            client.set("shop.browse", user)
        with client.pipeline() as pipe:
            for _ in range(50):
                pipe.timing("shop.search", 42)
        tcp = statsd.TCPStatsClient("127.0.0.1", tcp_port)
        for _ in range(30):
            tcp.timing("shop.tcp", 7)
        tcp.close()

        # DogStatsD: tags name the series (the client turns spaces in tags into "_"); timing,
        # histogram, distribution; increment; set.
        dog = DogStatsd(host="127.0.0.1", port=udp_port, disable_telemetry=True)
        tags_ok = ["service:pay", "operation:/pay", "status:200"]
        tags_err = ["service:pay", "operation:/pay", "status:503", "env:prod"]
        for _ in range(40):
            dog.timing("http.request", 120, tags=tags_ok)
        for _ in range(10):
            dog.histogram("http.request", 950, tags=tags_err)
        for _ in range(15):
            dog.distribution("http.request", 300, tags=tags_ok)
        dog.increment("http.hits", 7, tags=["service:pay", "operation:/status"])
        for index in range(25):
            dog.set("http.visitors", f"v{index % 20}", tags=["service:pay", "operation:/pay"])
        dog.gauge("queue.depth", 12, tags=["service:pay"])  # not requests: skipped
        dog.flush()

        # Junk: random datagrams, and a datagram with a bad line between two good ones.
        junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(200):
            junk.sendto(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))), ("127.0.0.1", udp_port))
        junk.sendto(b"shop.mixed:5|ms\nshop.mixed:oops|ms\n:::\nshop.mixed:6|ms|#status:404", ("127.0.0.1", udp_port))

        expected_shop = {
            ("checkout", "2xx"): len(latencies), ("login", "2xx"): 5 + 20 * sampled, ("search", "2xx"): 50, ("tcp", "2xx"): 30,
            ("mixed", "2xx"): 1, ("mixed", "4xx"): 1,
        }
        wait_for(lambda: {k: v["count"] for k, v in counts(node, "shop").items()} == expected_shop,
                 f"shop counts {expected_shop}")
        check(True, f"statsd timers, counters at a sample rate, a pipeline and TCP counted exactly: {expected_shop}")
        answer = node.query(service="shop", operation="checkout", metrics="count,p50,p90")
        values = answer["groups"][0]["points"][0]["values"]
        ordered = sorted(latencies)
        for name, q in [("p50", 0.5), ("p90", 0.9)]:
            exact = ordered[int(q * len(ordered))] * 1000
            low = ordered[max(0, int(q * len(ordered)) - 2)] * 1000 * 0.99
            high = ordered[min(len(ordered) - 1, int(q * len(ordered)) + 1)] * 1000 * 1.01
            check(low <= values[name] <= high, f"timer {name} {values[name]:.0f} us, exact {exact:.0f} us")
        browse = node.query(service="shop", operation="browse", metrics="unique_users")
        distinct = browse["groups"][0]["points"][0]["values"]["unique_users"]
        check(abs(distinct - len(set(users))) <= 2, f"a set's {len(set(users))} distinct members read as {distinct} users")

        expected_pay = {("/pay", "2xx"): 55, ("/pay", "5xx"): 10, ("/status", "2xx"): 7}
        wait_for(lambda: {k: v["count"] for k, v in counts(node, "pay").items()} == expected_pay,
                 f"pay counts {expected_pay}")
        check(True, f"DogStatsD timing, histogram, distribution and increment by their tags: {expected_pay}")
        visitors = node.query(service="pay", operation="/pay", metrics="unique_users")
        seen = sum(p["values"]["unique_users"] or 0 for g in visitors["groups"] for p in g["points"])
        check(19 <= seen <= 21, f"a DogStatsD set of 20 members: {seen} users")
        slow = node.query(service="pay", operation="/pay", status="5xx", metrics="p50")
        p50 = slow["groups"][0]["points"][0]["values"]["p50"]
        check(abs(p50 - 950_000) / 950_000 < 0.006, f"histogram values are milliseconds: p50 {p50:.0f} us")
        check(node.metric("tally_statsd_lines_total", '{outcome="invalid"}') >= 200,
              "junk datagrams and malformed lines are counted as invalid")
        check(node.metric("tally_statsd_lines_total", '{outcome="skipped"}') >= 1, "the gauge is skipped, and counted")
        print("statsd test: passed")
    except BaseException:
        print(node.tail(), file=sys.stderr)
        raise
    finally:
        node.cleanup()


if __name__ == "__main__":
    main()
