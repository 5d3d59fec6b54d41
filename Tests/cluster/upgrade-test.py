#!/usr/bin/env python3
"""A rolling upgrade between two builds, as processes: three regions over mutual TLS start on the
previous release's binary, under load; one region at a time is stopped (SIGTERM: it drains) and
started on the current binary over the same data directory, while every region keeps taking
writes; after each step every region must count exactly what was acknowledged so far. Last, one
region is rolled back to the previous build, and the totals must still be exact.

    Tests/cluster/upgrade-test.py --previous /tmp/tally-previous --current .build/release/tally

Uses the chaos test's cluster (Tests/cluster/chaos-test.py) without its proxy faults.
"""

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("chaos", os.path.join(here, "chaos-test.py"))
chaos = importlib.util.module_from_spec(spec)
spec.loader.exec_module(chaos)
REGIONS, KEY = chaos.REGIONS, chaos.KEY


def version(binary):
    return subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--previous", required=True, help="the previous release's tally binary")
    parser.add_argument("--current", required=True, help="this build's tally binary")
    parser.add_argument("--phase", type=float, default=6, help="seconds of load per step")
    parser.add_argument("--rate", type=int, default=500, help="events per second to each region")
    parser.add_argument("--converge-within", type=float, default=30)
    options = parser.parse_args()
    previous, current = os.path.abspath(options.previous), os.path.abspath(options.current)
    directory = tempfile.mkdtemp(prefix="tally-upgrade.")
    print(f"upgrade test: {previous} -> {current}, files in {directory}", flush=True)
    cluster = chaos.Cluster(current, directory, seed=1)
    cluster.prepare()
    builds = {region: previous for region in REGIONS}
    failed = []

    def start(region, binary):
        cluster.tally = binary
        builds[region] = binary
        cluster.start(region)

    def stop(region):
        process = cluster.processes.pop(region)
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=60)
        if status != 0:
            failed.append(f"{region} on {builds[region]} exited {status} after SIGTERM")

    now_ms = int(time.time() * 1000)
    window = (now_ms - 600_000, now_ms + 3_600_000)
    acknowledged = {}

    def phase(name, during=None):
        """Load every region for a phase (calling `during` a third of the way in), then check that
        every region counts exactly what was acknowledged, within the convergence bound."""
        loads = {}
        for index, region in enumerate(REGIONS):
            loads[region] = subprocess.Popen(
                [current, "load", "--target", f"http://127.0.0.1:{cluster.http[region]}", "--key", KEY,
                 "--rate", str(options.rate), "--duration", str(options.phase), "--batch", "50",
                 "--concurrency", "4", "--services", "2", "--operations", "3", "--seed", str(index + 7),
                 "--retry-for", "60", "--service-prefix", f"{name}-{region}-",
                 "--acknowledged", os.path.join(directory, region, f"acknowledged-{name}.json")],
                stdout=open(os.path.join(directory, region, f"load-{name}.log"), "w"), stderr=subprocess.STDOUT)
        if during:
            time.sleep(options.phase / 3)
            during()
        for region, process in loads.items():
            if process.wait() != 0:
                failed.append(f"{name}: the load on {region} exited {process.returncode}: "
                              + open(os.path.join(directory, region, f"load-{name}.log")).read()[-1500:])
                return
            acknowledged.update(json.load(open(os.path.join(directory, region, f"acknowledged-{name}.json"))))
        deadline = time.monotonic() + options.converge_within
        ended = time.monotonic()
        while True:
            counts = {region: {service: cluster.count(region, service, window) for service in sorted(acknowledged)}
                      for region in REGIONS}
            if all(counts[region] == acknowledged for region in REGIONS):
                on = ", ".join(f"{r} {'current' if builds[r] == current else 'previous'}" for r in REGIONS)
                print(f"  {name}: {sum(acknowledged.values())} acknowledged events so far, exact in every region "
                      f"{time.monotonic() - ended:.1f} s after the load ({on})", flush=True)
                return
            if time.monotonic() > deadline:
                failed.append(f"{name}: regions did not reach the acknowledged totals within "
                              f"{options.converge_within:g} s:\n  acknowledged {acknowledged}\n"
                              + "\n".join(f"  {region} {counts[region]}" for region in REGIONS))
                return
            time.sleep(0.3)

    try:
        print(f"  previous: {version(previous)}; current: {version(current)}", flush=True)
        for region in REGIONS:
            start(region, previous)
        phase("all-previous")
        for region in REGIONS:
            if failed:
                break

            def replace(region=region):
                print(f"  replacing {region}: SIGTERM, then the current build on its data directory", flush=True)
                stop(region)
                start(region, current)
            phase(f"upgraded-{region}", during=replace)
        if not failed:
            protocols = {peer["region"]: peer.get("protocol") for peer in cluster.cluster_view(REGIONS[0])["peers"]}
            print(f"  every region on the current build; {REGIONS[0]}'s links speak protocols {protocols}", flush=True)

            def rollback():
                print(f"  rolling {REGIONS[-1]} back to the previous build", flush=True)
                stop(REGIONS[-1])
                start(REGIONS[-1], previous)
            phase("rolled-back", during=rollback)
    finally:
        for process in cluster.processes.values():
            process.send_signal(signal.SIGKILL)
            process.wait()
    if failed:
        print("UPGRADE TEST FAILED:\n" + "\n".join(failed))
        print(f"files kept in {directory}")
        sys.exit(1)
    print(f"upgrade test passed: {sum(acknowledged.values())} acknowledged events through 3 upgrades and a rollback, "
          "exact in every region at every step")
    shutil.rmtree(directory)


if __name__ == "__main__":
    main()
