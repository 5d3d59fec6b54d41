#!/usr/bin/env python3
"""Chaos test of a real three-region cluster: three `tally serve` processes over mutual TLS, each
under load from its own `tally load`, while one node is killed with SIGKILL and restarted and peer
links are cut and stalled by a TCP proxy between every pair. After the last heal every region must
report, for every service of every region, exactly the events that region acknowledged.

    Tests/cluster/chaos-test.py [--seed N] [--tally PATH] [--duration S] [--rate EVENTS_PER_S]

Every node dials its peers through the proxy (one listening port per direction, A -> B), so the
test decides per direction what happens to the bytes: `pass`, `cut` (connections closed, new ones
closed on accept) or `stall` (connections stay open, nothing is forwarded: the sender's TCP window
fills, its bounded send queue fills and drops). The seed picks which region is killed and which
links fail; a failure prints the command that replays it. Only the standard library is used.
"""

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

REGIONS = ["us-east", "eu-west", "ap-south"]
KEY = "chaos-key"


def free_ports(count):
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class Proxy:
    """One TCP proxy per direction of each peer link, on an asyncio loop in a thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.links = {}  # (from, to) -> {"mode": str, "target": port, "pipes": set, "resume": Event}
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, function, *args):
        return asyncio.run_coroutine_threadsafe(function(*args), self.loop).result(timeout=10)

    def add(self, source, target, listen_port, target_port):
        async def start():
            link = {"mode": "pass", "target": target_port, "pipes": set(), "resume": asyncio.Event()}
            link["resume"].set()
            self.links[(source, target)] = link

            async def accept(reader, writer):
                if link["mode"] == "cut":
                    writer.close()
                    return
                try:
                    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", link["target"])
                except OSError:
                    writer.close()
                    return
                pipe = (writer, up_writer)
                link["pipes"].add(pipe)
                await asyncio.gather(self.pump(reader, up_writer, link), self.pump(up_reader, writer, link),
                                     return_exceptions=True)
                link["pipes"].discard(pipe)
                writer.close()
                up_writer.close()

            await asyncio.start_server(accept, "127.0.0.1", listen_port)

        self.call(start)

    async def pump(self, reader, writer, link):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                # A stalled link holds the bytes (and stops reading, so TCP pushes back).
                await link["resume"].wait()
                if link["mode"] == "cut":
                    break
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def set_mode(self, source, target, mode):
        async def apply():
            link = self.links[(source, target)]
            link["mode"] = mode
            if mode == "stall":
                link["resume"].clear()
            else:
                link["resume"].set()
            if mode == "cut":
                for client, upstream in list(link["pipes"]):
                    client.close()
                    upstream.close()

        self.call(apply)


class Cluster:
    def __init__(self, tally, directory, seed):
        self.tally = tally
        self.directory = directory
        self.seed = seed
        self.proxy = Proxy()
        self.processes = {}
        http = free_ports(3)
        peer = free_ports(3)
        self.http = dict(zip(REGIONS, http))
        self.peer = dict(zip(REGIONS, peer))
        pairs = [(a, b) for a in REGIONS for b in REGIONS if a != b]
        self.proxy_ports = dict(zip(pairs, free_ports(len(pairs))))
        for (a, b), port in self.proxy_ports.items():
            self.proxy.add(a, b, port, self.peer[b])

    def run(self, *arguments):
        subprocess.run([self.tally, *arguments], check=True, stdout=subprocess.DEVNULL)

    def prepare(self, gossip=None):
        ca = os.path.join(self.directory, "ca")
        self.run("certs", "ca", "--out", ca)
        key_hash = subprocess.run([self.tally, "config", "hash-key", KEY], check=True, capture_output=True,
                                  text=True).stdout.strip()
        for region in REGIONS:
            tls = os.path.join(self.directory, region, "tls")
            self.run("certs", "node", "--ca", ca, "--node", "n1", "--region", region, "--ip", "127.0.0.1",
                     "--out", tls)
            peers = "\n".join(
                f"    - {{node: n1, region: {other}, address: 127.0.0.1:{self.proxy_ports[(region, other)]}}}"
                for other in REGIONS if other != region)
            config = f"""node: n1
region: {region}
listen: 127.0.0.1:{self.http[region]}
data_dir: {self.directory}/{region}/data
api_keys:
  - name: chaos
    sha256: {key_hash}
cluster:
  listen: 127.0.0.1:{self.peer[region]}
{f"  gossip_interval: {gossip}" if gossip else ""}
  tls: {{certificate: {tls}/n1.pem, key: {tls}/n1-key.pem, ca: {tls}/ca.pem}}
  peers:
{peers}
storage:
  checkpoint_interval: 500ms
"""
            with open(self.config_path(region), "w") as file:
                file.write(config)

    def config_path(self, region):
        return os.path.join(self.directory, region, "tally.yaml")

    def start(self, region):
        log = open(os.path.join(self.directory, region, "node.log"), "a")
        self.processes[region] = subprocess.Popen([self.tally, "serve", "--config", self.config_path(region)],
                                                  stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.http[region]}/health", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"{region} did not come up; see {self.directory}/{region}/node.log")

    def kill(self, region):
        process = self.processes.pop(region)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop_all(self):
        for process in self.processes.values():
            process.send_signal(signal.SIGKILL)
            process.wait()
        self.processes = {}

    def count(self, region, service, window):
        url = (f"http://127.0.0.1:{self.http[region]}/v1/query?service={service}"
               f"&from={window[0]}&to={window[1]}&metrics=count")
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {KEY}"})
        answer = json.load(urllib.request.urlopen(request, timeout=5))
        return int(sum(point["values"].get("count", 0) for group in answer["groups"] for point in group["points"]))

    def global_count(self, region, service, window):
        """consistency=global: the count joined over the regions that answered, and the missing ones."""
        url = (f"http://127.0.0.1:{self.http[region]}/v1/query?service={service}"
               f"&from={window[0]}&to={window[1]}&metrics=count&consistency=global")
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {KEY}"})
        answer = json.load(urllib.request.urlopen(request, timeout=10))
        count = int(sum(point["values"].get("count", 0) for group in answer["groups"] for point in group["points"]))
        return count, [missing["region"] for missing in answer["regions"]["missing"]]

    def cluster_view(self, region):
        request = urllib.request.Request(f"http://127.0.0.1:{self.http[region]}/v1/cluster",
                                         headers={"Authorization": f"Bearer {KEY}"})
        return json.load(urllib.request.urlopen(request, timeout=5))


def reload_check(cluster, region):
    """SIGHUP with a config that does not parse is refused and the node keeps serving; with the
    good config again it is applied."""
    path = cluster.config_path(region)
    log_path = os.path.join(cluster.directory, region, "node.log")
    good = open(path).read()

    def hangup_and_wait(marker):
        seen = open(log_path).read().count(marker)
        cluster.processes[region].send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if open(log_path).read().count(marker) > seen:
                return True
            time.sleep(0.1)
        return False

    problems = []
    with open(path, "w") as file:
        file.write(good.replace("cluster:", "cluster:\n  gossip_interval: soon"))
    if not hangup_and_wait("config reload refused"):
        problems.append(f"{region}: SIGHUP with a broken config logged no refusal")
    with open(path, "w") as file:
        file.write(good)
    if not hangup_and_wait("config reloaded"):
        problems.append(f"{region}: SIGHUP with its config logged no reload")
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{cluster.http[region]}/health", timeout=2).read()
        print(f"  SIGHUP to {region}: a broken config was refused, the good one applied, the node still serves")
    except OSError as error:
        problems.append(f"{region} stopped answering after SIGHUP: {error}")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=random.randrange(1, 1 << 31))
    parser.add_argument("--tally", default=os.environ.get("TALLY", ".build/debug/tally"))
    parser.add_argument("--duration", type=float, default=32, help="seconds of load")
    parser.add_argument("--rate", type=int, default=600, help="events per second to each region")
    parser.add_argument("--converge-within", type=float, default=30, help="seconds allowed after the last heal")
    parser.add_argument("--keep", action="store_true", help="keep the directory even when the test passes")
    options = parser.parse_args()
    rng = random.Random(options.seed)
    replay = f"Tests/cluster/chaos-test.py --seed {options.seed} --duration {options.duration:g} --rate {options.rate}"
    directory = tempfile.mkdtemp(prefix="tally-chaos.")
    print(f"chaos test: seed {options.seed}, files in {directory}", flush=True)

    cluster = Cluster(os.path.abspath(options.tally), directory, options.seed)
    cluster.prepare()
    for region in REGIONS:
        cluster.start(region)

    now_ms = int(time.time() * 1000)
    window = (now_ms - 600_000, now_ms + 3_600_000)
    loads = {}
    for index, region in enumerate(REGIONS):
        prefix = f"{region}-svc-"
        loads[region] = subprocess.Popen(
            [cluster.tally, "load", "--target", f"http://127.0.0.1:{cluster.http[region]}", "--key", KEY,
             "--rate", str(options.rate), "--duration", str(options.duration), "--batch", "50",
             "--concurrency", "4", "--services", "3", "--operations", "4", "--seed", str(options.seed + index),
             "--retry-for", "90", "--service-prefix", prefix,
             "--acknowledged", os.path.join(directory, region, "acknowledged.json")],
            stdout=open(os.path.join(directory, region, "load.log"), "w"), stderr=subprocess.STDOUT)

    # The faults, at fractions of the load's duration, in a seeded order of regions.
    victim, other, third = rng.sample(REGIONS, 3)
    step = options.duration / 8
    started = time.monotonic()

    def at(fraction, what):
        delay = started + fraction * step - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        print(f"  t={time.monotonic() - started:5.1f} s  {what}", flush=True)

    def links(mode, pairs):
        for a, b in pairs:
            cluster.proxy.set_mode(a, b, mode)

    at(1, f"kill -9 {victim}")
    cluster.kill(victim)
    at(1.5, f"restart {victim}")
    cluster.start(victim)
    at(2, f"cut the link {other} <-> {third} (both directions)")
    links("cut", [(other, third), (third, other)])
    at(3.5, "heal it")
    links("pass", [(other, third), (third, other)])
    at(4, f"stall {other} -> {victim} and {victim} -> {third} (connections open, no bytes move)")
    links("stall", [(other, victim), (victim, third)])
    # One stalled peer must not hold up the others: other and third still exchange both ways.
    time.sleep(step / 4)
    flowing = f"{third}-svc-1"
    flowing_before = cluster.count(other, flowing, window)
    at(5.4, f"while stalled: does {other} still receive {third}'s events?")
    flowing_after = cluster.count(other, flowing, window)
    at(5.5, "release them")
    links("pass", [(other, victim), (victim, third)])
    at(6, f"isolate {third}: every link to and from it cut; both sides keep taking writes")
    isolated = [(third, r) for r in REGIONS if r != third] + [(r, third) for r in REGIONS if r != third]
    links("cut", isolated)
    # Proof that the cut is real: while it lasts, the isolated region's new events stay there.
    time.sleep(step / 4)
    probe = f"{third}-svc-0"
    seen_before = (cluster.count(other, probe, window), cluster.count(third, probe, window))
    at(7.4, "while isolated: compare what the isolated region and the others count")
    seen_after = (cluster.count(other, probe, window), cluster.count(third, probe, window))
    isolated_global = cluster.global_count(other, probe, window)
    at(7.5, "heal")
    links("pass", isolated)
    healed = time.monotonic()

    failed = []
    if flowing_after <= flowing_before:
        failed.append(f"during the stall {other} stopped receiving {third}'s events ({flowing} stayed at "
                      f"{flowing_before}): a stalled peer held up the others")
    else:
        print(f"  stalled: {other} still received {flowing_after - flowing_before} of {third}'s {flowing} events",
              flush=True)
    if not (seen_after[0] == seen_before[0] and seen_after[1] > seen_before[1]):
        failed.append(f"the isolation leaked: {other} counted {probe} {seen_before[0]} -> {seen_after[0]} while "
                      f"{third} counted {seen_before[1]} -> {seen_after[1]}")
    else:
        print(f"  isolated: {third} counted {seen_after[1] - seen_before[1]} new {probe} events that {other} "
              "did not see", flush=True)
    if isolated_global[1] != [third]:
        failed.append(f"a global read at {other} during the isolation named {isolated_global[1]} as missing, "
                      f"not [{third}]")
    acknowledged = {}
    for region, process in loads.items():
        status = process.wait()
        log = open(os.path.join(directory, region, "load.log")).read()
        print(f"  load on {region}: " + " | ".join(line for line in log.splitlines()
                                                     if line.startswith(("acknowledged", "node reports"))))
        if status != 0:
            failed.append(f"the load on {region} exited {status}:\n{log}")
            continue
        acknowledged.update(json.load(open(os.path.join(directory, region, "acknowledged.json"))))

    converged_after = None
    counts = {}
    if not failed:
        deadline = time.monotonic() + options.converge_within
        while time.monotonic() < deadline:
            counts = {region: {service: cluster.count(region, service, window) for service in sorted(acknowledged)}
                      for region in REGIONS}
            if all(counts[region] == acknowledged for region in REGIONS):
                converged_after = time.monotonic() - max(healed, started + options.duration)
                break
            time.sleep(0.2)
        if converged_after is None:
            failed.append("regions did not reach the acknowledged totals within "
                          f"{options.converge_within:g} s:\n  acknowledged {acknowledged}\n"
                          + "\n".join(f"  {region} {counts.get(region)}" for region in REGIONS))
    total = sum(acknowledged.values())
    if not failed:
        # Converged: a global read anywhere gives the same exact totals, with nobody missing. A node
        # asks only on the connections it dialed, and a link cut for seconds leaves its dialer
        # backed off (up to reconnectMax, 2 s), while gossip can already converge over the other
        # direction: allow one backoff period for every region to be asked.
        reader = rng.choice(REGIONS)
        reconnect_deadline = time.monotonic() + 7
        while True:
            results = {service: cluster.global_count(reader, service, window) for service in sorted(acknowledged)}
            if all(not missing for _, missing in results.values()) or time.monotonic() > reconnect_deadline:
                break
            time.sleep(0.5)
        for service, expected in sorted(acknowledged.items()):
            count, missing = results[service]
            if count != expected or missing:
                failed.append(f"global read at {reader}: {service} {count} (acknowledged {expected}), missing {missing}")
        if not failed:
            print(f"  global reads at {reader}: every service exact, every region answered; during the isolation "
                  f"{other} named {third} as missing", flush=True)
    if not failed:
        for region in REGIONS:
            view = cluster.cluster_view(region)
            down = [peer["region"] for peer in view.get("peers", []) if not peer.get("connected")]
            if down:
                failed.append(f"{region} reports peers not connected after the heal: {down}")
    if not failed:
        failed += reload_check(cluster, rng.choice(REGIONS))
    cluster.stop_all()
    starts = sum(open(os.path.join(directory, r, "node.log")).read().count("recovered") for r in REGIONS)
    if starts != 4:
        failed.append(f"expected 4 node starts (3 + 1 restart), the logs show {starts}")
    if failed:
        print("CHAOS TEST FAILED:\n" + "\n".join(failed))
        print(f"files kept in {directory}; replay with: {replay}")
        sys.exit(1)
    print(f"chaos test passed: {total} acknowledged events, counted exactly once in each of the 3 regions, "
          f"equal {converged_after:.2f} s after the last heal and the end of the load")
    if not options.keep:
        shutil.rmtree(directory)


if __name__ == "__main__":
    main()
