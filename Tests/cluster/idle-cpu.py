#!/usr/bin/env python3
"""Idle cost of a real three-region cluster: starts three `tally serve` processes over mutual TLS
(the chaos test's cluster, links passing through its proxy), sends each a second of traffic so
that every digest names every origin, then nothing; after a warm-up it
reports each node's CPU time over the measured window as a share of one core, and the bytes it
sent to its peers.

    Tests/cluster/idle-cpu.py [--tally PATH] [--seconds S]     (release build recommended)
"""

import argparse
import importlib.util
import os
import shutil
import subprocess
import tempfile
import time

spec = importlib.util.spec_from_file_location("chaos", os.path.join(os.path.dirname(__file__), "chaos-test.py"))
chaos = importlib.util.module_from_spec(spec)
spec.loader.exec_module(chaos)


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tally", default=os.environ.get("TALLY", ".build/release/tally"))
    parser.add_argument("--seconds", type=float, default=60)
    options = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="tally-idle.")
    cluster = chaos.Cluster(os.path.abspath(options.tally), directory, seed=1)
    cluster.prepare()
    try:
        for region in chaos.REGIONS:
            cluster.start(region)
        # A little traffic first, so that every digest carries every origin, as in a real cluster.
        for region in chaos.REGIONS:
            subprocess.run([cluster.tally, "load", "--target", f"http://127.0.0.1:{cluster.http[region]}",
                            "--key", chaos.KEY, "--rate", "100", "--duration", "1", "--batch", "10",
                            "--service-prefix", f"{region}-svc-", "--no-verify"],
                           check=True, stdout=subprocess.DEVNULL)
        time.sleep(5)  # replicated, checkpoints written
        before = {region: cpu_seconds(process.pid) for region, process in cluster.processes.items()}
        sent_before = {region: sum(p["bytes_out"] for p in cluster.cluster_view(region)["peers"])
                       for region in chaos.REGIONS}
        started = time.monotonic()
        time.sleep(options.seconds)
        elapsed = time.monotonic() - started
        shares = {region: (cpu_seconds(process.pid) - before[region]) / elapsed
                  for region, process in cluster.processes.items()}
        sent = {region: sum(p["bytes_out"] for p in cluster.cluster_view(region)["peers"]) - sent_before[region]
                for region in chaos.REGIONS}
        for region, share in shares.items():
            print(f"{region}: {100 * share:.2f}% of a core idle over {elapsed:.0f} s, "
                  f"sent {8 * sent[region] / elapsed / 1000:.1f} kbit/s to its peers")
        print(f"largest: {100 * max(shares.values()):.2f}% of a core")
    finally:
        cluster.stop_all()
        shutil.rmtree(directory)


if __name__ == "__main__":
    main()
