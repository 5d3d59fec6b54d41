#!/usr/bin/env python3
"""The HTML SLO report, rendered by headless Chromium.

Starts one node, writes an hour of traffic into it (backdated, with an error burst twenty minutes
ago), asks `tally slo report --format html` for the SLOs of a spec file, and checks that:
- the page is self-contained: no script, stylesheet, image, frame or font is fetched;
- Chromium renders it, and the screenshot's charts are not blank: the SLI line, the traffic bars
  and the burn-rate bars each cover enough pixels of their colour.

Usage: html-report-test.py --tally .build/debug/tally [--keep-screenshot FILE]
"""

import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from PIL import Image

KEY = "dev-key"
KEY_SHA256 = "7e9f8fd111802be56c379d597842e29b2cebd35ff2133d431a49fa556a18704e"
# The report's chart colours (SLOReportHTML): line, bad, good.
COLOURS = {"SLI line": (0x1F, 0x5F, 0xBF), "bad requests": (0xC6, 0x28, 0x28), "good traffic": (0x2E, 0x8B, 0x57)}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, events):
    body = json.dumps(events).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200, response.status


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tally", required=True)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--keep-screenshot")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="tally-html-report-")
    port = free_port()
    config = os.path.join(directory, "node.yaml")
    with open(config, "w") as f:
        f.write(f"""node: report-1
region: us-east
listen: 127.0.0.1:{port}
data_dir: {directory}/data
api_keys:
  - {{name: dev, sha256: {KEY_SHA256}}}
""")
    spec = os.path.join(directory, "slo.yaml")
    with open(spec, "w") as f:
        f.write("""slos:
  - {name: checkout-availability, service: checkout, objective: 99, window: 1h, minimum_events: 100,
     runbook: "https://runbooks.example/checkout"}
  - {name: checkout-latency, service: checkout, objective: 90, sli: "latency <= 40ms", window: 1h}
""")
    node = subprocess.Popen([args.tally, "serve", "--config", config], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(directory, "node.log"), "w"))
    failed = []
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/health", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        # An hour of traffic, a minute at a time; 30% errors for ten minutes twenty minutes ago.
        now = int(time.time() * 1000)
        rng = random.Random(7)
        for minute in range(60, 0, -1):
            burst = 20 <= minute < 30
            events = [{"service": "checkout", "operation": rng.choice(["POST /pay", "GET /cart"]),
                       "status": 503 if rng.random() < (0.3 if burst else 0.002) else 200,
                       "latency": int(20_000 * 2.718 ** (0.5 * rng.gauss(0, 1))), "user": f"u{rng.randrange(500)}",
                       "timestamp": now - minute * 60_000 + rng.randrange(60_000)} for _ in range(200)]
            post(base + "/v1/events", events)
        report = os.path.join(directory, "report.html")
        subprocess.run([args.tally, "slo", "report", "--spec", spec, "--node", base, "--format", "html",
                        "--output", report], check=True)
        html = open(report, encoding="utf-8").read()
        for pattern, what in [(r"<script", "a script"), (r"<link", "a linked resource"), (r"<img", "an image"),
                              (r"<iframe", "a frame"), (r"@import", "an imported stylesheet"),
                              (r"url\(", "a CSS url()"), (r"\ssrc=", "a src attribute")]:
            if re.search(pattern, html, re.IGNORECASE):
                failed.append(f"the report is not self-contained: it holds {what}")
        if html.count("<svg") != 8:
            failed.append(f"expected 8 charts (4 per SLO), found {html.count('<svg')}")
        shot = os.path.join(directory, "report.png")
        result = subprocess.run([args.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                 "--window-size=1150,2200", f"--screenshot={shot}", "file://" + report],
                                capture_output=True, text=True, timeout=120)
        if not os.path.exists(shot):
            failed.append(f"chromium took no screenshot: {result.stderr[-2000:]}")
        else:
            image = Image.open(shot).convert("RGB")
            counts = {name: 0 for name in COLOURS}
            for pixel in image.getdata():
                for name, colour in COLOURS.items():
                    if all(abs(a - b) <= 12 for a, b in zip(pixel, colour)):
                        counts[name] += 1
            print(f"screenshot {image.size[0]}x{image.size[1]}: " + ", ".join(f"{n} {c} px" for n, c in counts.items()))
            for name, count in counts.items():
                if count < 500:
                    failed.append(f"the charts look blank: only {count} pixels of the {name} colour")
            if args.keep_screenshot:
                shutil.copy(shot, args.keep_screenshot)
    finally:
        node.terminate()
        node.wait(timeout=30)
        if not failed:
            shutil.rmtree(directory, ignore_errors=True)
    if failed:
        print("html report test FAILED (files kept in " + directory + "):\n  " + "\n  ".join(failed))
        sys.exit(1)
    print("html report test passed: self-contained, rendered by chromium, charts drawn")


if __name__ == "__main__":
    main()
