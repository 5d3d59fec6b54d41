#!/usr/bin/env python3
"""`tally backup` of a running node under load, and `tally restore` of it into a new node.

    Tests/integrations/backup-test.py --tally .build/debug/tally

A client posts batches one at a time and counts acknowledgements while a backup is taken; the
backup must hold every event acknowledged before it began and nothing beyond what was acknowledged
(or in flight) when it ended. A restore under the running node is refused (its data directory is
locked); restored into a node of its own, the backup counts exactly what it holds, and a second
node on the same data directory is refused too.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

from tallynode import KEY, TallyNode, check


def post(node, events):
    request = urllib.request.Request(f"http://127.0.0.1:{node.port}/v1/events", data=json.dumps(events).encode(),
                                     method="POST", headers={"Authorization": f"Bearer {KEY}",
                                                             "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())["accepted"]


def total(node):
    answer = node.query(service="shop")
    return sum(point["values"]["count"] for group in answer["groups"] for point in group["points"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tally", required=True)
    args = parser.parse_args()
    tally = os.path.abspath(args.tally)
    node = TallyNode(tally, name="backup-1").start()
    restored = None
    try:
        acknowledged = 0
        stop = threading.Event()

        def load():
            nonlocal acknowledged
            batch = 0
            while not stop.is_set():
                now = int(time.time() * 1000)
                events = [{"service": "shop", "operation": f"op-{i % 5}", "status": 200, "latency": 1000 + i,
                           "user": f"u{batch}-{i}", "timestamp": now} for i in range(100)]
                acknowledged += post(node, events)
                batch += 1

        loader = threading.Thread(target=load)
        loader.start()
        time.sleep(2)  # several checkpoints (every 300 ms) and a log after the last one
        backup = os.path.join(node.dir, "backup.sqlite")
        before = acknowledged
        out = subprocess.run([tally, "backup", "--config", node.config, "--out", backup],
                             capture_output=True, text=True)
        after = acknowledged
        print("  " + out.stdout.strip())
        check(out.returncode == 0, f"tally backup of a node under load exits 0 ({out.stderr.strip()})")
        time.sleep(1)
        stop.set()
        loader.join()

        refused = subprocess.run([tally, "restore", "--config", node.config, "--from", backup, "--replace"],
                                 capture_output=True, text=True)
        check(refused.returncode != 0 and "in use" in refused.stderr,
              f"a restore under the running node is refused: {refused.stderr.strip()}")
        check(total(node) == acknowledged, f"the node counts the {acknowledged} events it acknowledged")
        node.stop()

        restored = TallyNode(tally, name="backup-1")
        out = subprocess.run([tally, "restore", "--config", restored.config, "--from", backup],
                             capture_output=True, text=True)
        print("  " + out.stdout.strip().replace("\n", "\n  "))
        check(out.returncode == 0, f"tally restore into an empty data directory exits 0 ({out.stderr.strip()})")
        restored.start()
        counted = total(restored)
        # One batch may have been durable, not yet acknowledged, when the backup ended.
        check(before <= counted <= after + 100,
              f"the restored node counts {counted}: every event acknowledged before the backup began ({before}), "
              f"none beyond those acknowledged or in flight when it ended ({after} + 100)")
        second = subprocess.run([tally, "serve", "--config", restored.config], capture_output=True, text=True, timeout=60)
        check(second.returncode != 0 and "in use" in second.stderr,
              f"a second node on the same data directory is refused: {second.stderr.strip()[-200:]}")
    finally:
        node.cleanup()
        if restored:
            restored.cleanup()
    print("backup test passed")


if __name__ == "__main__":
    sys.exit(main())
