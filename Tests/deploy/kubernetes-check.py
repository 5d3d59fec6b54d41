#!/usr/bin/env python3
"""Checks the Kubernetes recipe against the region configs it is meant to run: every file a config
names under /etc/tally (TLS files, SLO files, the config itself) is one the StatefulSet's projected
volume provides, data_dir is the data volume's mount, and the container ports are the configs'.

usage: kubernetes-check.py deploy/kubernetes/tally.yaml deploy/regions/*.yaml
"""
import posixpath, sys
import yaml

def main():
    manifest, configs = sys.argv[1], sys.argv[2:]
    if not configs:
        sys.exit("name at least one region config")
    docs = [d for d in yaml.safe_load_all(open(manifest)) if d]
    sets = [d for d in docs if d["kind"] == "StatefulSet"]
    if len(sets) != 1:
        sys.exit(f"{manifest}: expected one StatefulSet, found {len(sets)}")
    pod = sets[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    provided = set()
    for name, path in mounts.items():
        volume = volumes.get(name)
        if volume is None:
            continue  # a volume claim template
        for source in volume.get("projected", {}).get("sources", []):
            for kind in ("configMap", "secret"):
                for item in source.get(kind, {}).get("items", []):
                    provided.add(posixpath.join(path, item["path"]))
    claims = {t["metadata"]["name"] for t in sets[0]["spec"].get("volumeClaimTemplates", [])}
    ports = {p["containerPort"] for p in container["ports"]}
    config_arg = container["args"][container["args"].index("--config") + 1]
    problems = []
    if config_arg not in provided:
        problems.append(f"the container's --config {config_arg} is not in its volumes")
    for path in configs:
        config = yaml.safe_load(open(path))
        wanted = list(config.get("slo_files", []))
        tls = (config.get("cluster") or {}).get("tls") or {}
        wanted += [tls[k] for k in ("certificate", "key", "ca") if k in tls]
        for file in wanted:
            if file.startswith("/etc/tally/") and file not in provided:
                problems.append(f"{path}: {file} is not provided by the StatefulSet's volumes")
        data = config.get("data_dir")
        if not any(mounts.get(claim) == data for claim in claims):
            problems.append(f"{path}: data_dir {data} is not the mount of a volume claim ({sorted(mounts.values())})")
        for key, address in (("listen", config.get("listen")), ("cluster.listen", (config.get("cluster") or {}).get("listen"))):
            if address and int(address.rsplit(":", 1)[1]) not in ports:
                problems.append(f"{path}: {key} port {address} is not a container port {sorted(ports)}")
    for problem in problems:
        print(problem)
    if problems:
        sys.exit(1)
    print(f"{manifest}: provides every file and port of {len(configs)} region configs")

if __name__ == "__main__":
    main()
