"""A real `tally serve` for the integration tests: config, start, wait, query, kill -9, restart.

The tests here drive Tally with clients nobody on the team wrote (OpenTelemetry's Python SDK,
the `statsd` and `datadog` packages, Prometheus), so they talk to the binary over its real ports.
"""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

KEY = "integration-test-key"


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TallyNode:
    def __init__(self, tally, extra_yaml="", name="it-1"):
        self.tally = tally
        self.dir = tempfile.mkdtemp(prefix="tally-it.")
        self.port = free_port()
        self.ports = {}
        key_hash = subprocess.check_output([tally, "config", "hash-key", KEY], text=True).strip()
        self.config = os.path.join(self.dir, "node.yaml")
        with open(self.config, "w") as f:
            f.write(f"""node: {name}
region: test
listen: 127.0.0.1:{self.port}
data_dir: {self.dir}/data
api_keys:
  - name: it
    sha256: {key_hash}
storage:
  checkpoint_interval: 300ms
{extra_yaml}""")
        self.process = None
        self.log = open(os.path.join(self.dir, "node.log"), "ab")

    def start(self):
        self.process = subprocess.Popen([self.tally, "serve", "--config", self.config],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tally serve exited {self.process.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("tally serve did not come up:\n" + self.tail())

    def tail(self, lines=30):
        with open(os.path.join(self.dir, "node.log"), "rb") as f:
            return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")

    def kill9(self):
        self.process.kill()
        self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def cleanup(self, keep=False):
        self.stop()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def get(self, path, params=None, auth=True):
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        request = urllib.request.Request(url)
        if auth:
            request.add_header("Authorization", f"Bearer {KEY}")
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    def query(self, **params):
        params.setdefault("from", str(int(time.time() * 1000) - 3_600_000))
        params.setdefault("to", str(int(time.time() * 1000) + 600_000))
        return json.loads(self.get("/v1/query", params))

    def metric(self, name, labels=""):
        """A sample of the node's own /metrics, 0 if absent."""
        text = self.get("/metrics").decode()
        for line in text.splitlines():
            if line.startswith(name + labels + " "):
                return float(line.split()[-1])
        return 0.0


def check(condition, message):
    if not condition:
        raise AssertionError(message)
    print("  ok:", message)
