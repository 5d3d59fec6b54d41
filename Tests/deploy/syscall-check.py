#!/usr/bin/env python3
"""Runs two Tally regions under strace, peered over mutual TLS, drives them (ingest, replication, a
global read, metrics, checkpoints, SIGHUP, SIGTERM), and checks
that every system call it made and every socket family it opened is allowed by the systemd unit's
SystemCallFilter= and RestrictAddressFamilies= lines: a hardened unit that kills the node on its
first unexpected call is worse than none.

usage: syscall-check.py --tally .build/debug/tally --unit deploy/systemd/tally.service
"""
import argparse, json, shutil, os, re, signal, socket, subprocess, sys, tempfile, time, urllib.request

def expand(group, cache={}):
    """The system calls of a systemd syscall group, nested groups included."""
    if group in cache:
        return cache[group]
    out = subprocess.run(["systemd-analyze", "syscall-filter", group], check=True, capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines()[1:]:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        names |= expand(line) if line.startswith("@") else {line}
    cache[group] = names
    return names

def unit_filter(unit_path):
    """(allowed, denied, families) from the unit's SystemCallFilter= and RestrictAddressFamilies=."""
    allowed, denied, families = set(), set(), set()
    for line in open(unit_path):
        line = line.strip()
        if line.startswith("SystemCallFilter="):
            value = line.split("=", 1)[1]
            deny = value.startswith("~")
            for item in value.lstrip("~").split():
                names = expand(item) if item.startswith("@") else {item}
                (denied if deny else allowed).update(names)
        elif line.startswith("RestrictAddressFamilies="):
            families |= set(line.split("=", 1)[1].split())
    if not allowed:
        sys.exit(f"{unit_path}: no SystemCallFilter= allow list")
    return allowed, denied, families

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def request(port, path, body=None, key="dev-key"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST" if body else "GET",
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as answer:
        return answer.status, answer.read()

def counted(answer):
    """The count of a query answer without group_by: one group, one point over the range."""
    return sum(point["values"]["count"] for group in answer.get("groups", []) for point in group["points"])

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tally", required=True)
    parser.add_argument("--unit", required=True)
    args = parser.parse_args()
    allowed, denied, families = unit_filter(args.unit)
    permitted = allowed - denied

    work = tempfile.mkdtemp(prefix="tally-syscalls-")
    # As the unit runs it: not as root (SQLite, for one, calls fchown only as root).
    as_user = []
    if os.geteuid() == 0:
        as_user = ["-u", "nobody"]
        os.chmod(work, 0o777)
    # Two regions over mutual TLS, so the transport's calls (TLS, DNS, connect, gossip) are traced too.
    subprocess.run([args.tally, "certs", "ca", "--out", f"{work}/ca"], check=True, capture_output=True)
    regions = ["east", "west"]
    http = {r: free_port() for r in regions}
    cluster = {r: free_port() for r in regions}
    nodes = {}
    for region in regions:
        subprocess.run([args.tally, "certs", "node", "--ca", f"{work}/ca", "--node", "n1", "--region", region,
                        "--dns", "localhost", "--out", f"{work}/{region}"], check=True, capture_output=True)
        other = next(r for r in regions if r != region)
        config = f"{work}/{region}.yaml"
        with open(config, "w") as f:
            f.write(f"""node: n1
region: {region}
listen: 127.0.0.1:{http[region]}
data_dir: {work}/{region}/data
api_keys:
  - name: test
    sha256: 7e9f8fd111802be56c379d597842e29b2cebd35ff2133d431a49fa556a18704e
storage:
  checkpoint_interval: 1s
cluster:
  listen: 127.0.0.1:{cluster[region]}
  advertise: localhost:{cluster[region]}
  gossip_interval: 100ms
  tls: {{certificate: {work}/{region}/n1.pem, key: {work}/{region}/n1-key.pem, ca: {work}/{region}/ca.pem}}
  peers:
    - {{node: n1, region: {other}, address: localhost:{cluster[other]}}}
""")
        subprocess.run(["chmod", "-R", "a+rwX", work], check=True)
        trace = f"{work}/{region}.trace"
        nodes[region] = (subprocess.Popen(["strace", "-f", "-qq", *as_user, "-o", trace, args.tally, "serve", "--config", config],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), trace)
    try:
        for region, (node, _) in nodes.items():
            deadline = time.time() + 120
            while True:
                try:
                    if request(http[region], "/health")[0] == 200:
                        break
                except OSError:
                    pass
                if time.time() > deadline or node.poll() is not None:
                    sys.exit(f"{region} under strace did not come up: " + node.stderr.read().decode(errors="replace")[-2000:])
                time.sleep(0.2)
        now_ms = int(time.time() * 1000)
        for batch in range(5):
            events = [{"service": "checkout", "operation": "pay", "status": 200 if i % 10 else 503,
                       "latency": 5000 + i, "user": f"u{i}", "timestamp": now_ms - i} for i in range(200)]
            status, answer = request(http["east"], "/v1/events", json.dumps(events).encode())
            if status != 200 or json.loads(answer)["accepted"] != 200:
                sys.exit(f"ingest under strace answered {status}: {answer[:300]}")
        # Replicated: west counts east's 1,000 events (a local read), within 60 s.
        deadline = time.time() + 60
        while True:
            answer = json.loads(request(http["west"], "/v1/query?service=checkout")[1])
            if counted(answer) == 1000 or time.time() > deadline:
                break
            time.sleep(0.5)
        request(http["east"], "/v1/query?service=checkout&consistency=global")
        request(http["east"], "/metrics")
        time.sleep(1.5)  # a checkpoint
        for region, (node, _) in nodes.items():
            # Signals go to the traced node itself, not to strace (which would detach).
            children = open(f"/proc/{node.pid}/task/{node.pid}/children").read().split()
            if len(children) != 1:
                sys.exit(f"expected strace to have one child, the node: {children}")
            tally_pid = int(children[0])
            os.kill(tally_pid, signal.SIGHUP)
            time.sleep(0.5)
            request(http[region], "/health")
            os.kill(tally_pid, signal.SIGTERM)
            node.wait(timeout=60)
            if node.returncode != 0:
                sys.exit(f"{region} exited {node.returncode} after SIGTERM: " + node.stderr.read().decode(errors="replace")[-2000:])
        if counted(answer) != 1000:
            sys.exit(f"west did not count east's 1,000 events under strace: {str(answer)[:500]}")
    finally:
        for node, _ in nodes.values():
            if node.poll() is None:
                node.kill()
    calls, used_families = set(), set()
    call = re.compile(r"^\d+\s+(?:<\.\.\. )?([a-z_0-9]+)[( ]")
    for line in (line for _, trace in nodes.values() for line in open(trace)):
        match = call.match(line)
        if match and not line.split(None, 1)[1].startswith(("+++", "---")):
            calls.add(match.group(1))
        for family in re.findall(r"socket\((AF_[A-Z0-9]+)", line):
            used_families.add(family)
    if len(calls) < 20:
        sys.exit(f"only {len(calls)} distinct system calls traced: the trace did not work ({work})")
    refused = sorted(calls - permitted)
    wrong_families = sorted(used_families - families)
    print(f"{len(calls)} distinct system calls, socket families {sorted(used_families)}")
    if refused or wrong_families:
        print(f"the unit's filter would refuse: {refused}; families not allowed: {wrong_families}")
        sys.exit(1)
    print("every call and socket family is allowed by the unit")
    shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    main()
