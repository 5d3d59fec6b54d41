#!/usr/bin/env python3
"""Replication lag of a real three-region cluster under load: three `tally serve` processes over
mutual TLS, each written to by its own `tally load` at a third of the total rate. Every 100 ms
each node's /v1/cluster is read, and each peer's staleness (how far behind that origin the node
is: now minus the origin time its newest integrated batch was sealed) is one sample of the lag.
Samples from the first 5 s are dropped (connections, first checkpoints).

    Tests/cluster/replication-lag.py [--rate TOTAL_EVENTS_PER_S] [--seconds S] [--gossip 1s]
"""

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

spec = importlib.util.spec_from_file_location("chaos", os.path.join(os.path.dirname(__file__), "chaos-test.py"))
chaos = importlib.util.module_from_spec(spec)
spec.loader.exec_module(chaos)


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tally", default=os.environ.get("TALLY", ".build/release/tally"))
    parser.add_argument("--rate", type=int, default=100_000, help="events per second over the three regions")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--gossip", default=None, help="cluster.gossip_interval (default: the config default)")
    parser.add_argument("--verbose", action="store_true", help="print every sample")
    options = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="tally-lag.")
    cluster = chaos.Cluster(os.path.abspath(options.tally), directory, seed=1)
    cluster.prepare(gossip=options.gossip)
    loads = []
    try:
        for region in chaos.REGIONS:
            cluster.start(region)
        for index, region in enumerate(chaos.REGIONS):
            loads.append(subprocess.Popen(
                [cluster.tally, "load", "--target", f"http://127.0.0.1:{cluster.http[region]}", "--key", chaos.KEY,
                 "--rate", str(options.rate // 3), "--duration", str(options.seconds), "--batch", "1000",
                 "--concurrency", "8", "--services", "5", "--operations", "10", "--seed", str(index + 1),
                 "--service-prefix", f"{region}-svc-", "--no-verify"],
                stdout=open(os.path.join(directory, f"load-{region}.log"), "w"), stderr=subprocess.STDOUT))
        started = time.monotonic()
        samples = []
        links = {}
        while time.monotonic() - started < options.seconds:
            for region in chaos.REGIONS:
                view = cluster.cluster_view(region)
                if time.monotonic() - started < 5:
                    continue
                for peer in view["peers"]:
                    if peer.get("staleness_seconds") is not None:
                        samples.append(peer["staleness_seconds"])
                        links.setdefault(f"{region} behind {peer['region']}", []).append(peer["staleness_seconds"])
            time.sleep(0.1)
        for load in loads:
            load.wait()
        elapsed = time.monotonic() - started
        for region in chaos.REGIONS:
            view = cluster.cluster_view(region)
            sent = sum(peer["bytes_out"] for peer in view["peers"])
            dropped = sum(peer["messages_dropped"] for peer in view["peers"])
            print(f"{region}: sent {sent / elapsed / 1e6:.2f} MB/s to its peers, {dropped} messages dropped")
        if options.verbose:
            for link, values in sorted(links.items()):
                print(f"  {link}: p50 {percentile(values, 0.5):.2f} s, p99 {percentile(values, 0.99):.2f} s")
        for region in chaos.REGIONS:
            log = open(os.path.join(directory, f"load-{region}.log")).read()
            print(f"load on {region}: " + " | ".join(line for line in log.splitlines()
                                                     if line.startswith(("acknowledged", "throughput", "ack latency"))))
        print(f"replication lag over {len(samples)} samples (6 links, every 100 ms): "
              f"p50 {percentile(samples, 0.5):.2f} s, p99 {percentile(samples, 0.99):.2f} s, max {max(samples):.2f} s")
    finally:
        for load in loads:
            if load.poll() is None:
                load.kill()
        cluster.stop_all()
        shutil.rmtree(directory)


if __name__ == "__main__":
    main()
