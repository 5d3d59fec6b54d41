#!/usr/bin/env bash
# Crash test: a node under load is killed with SIGKILL at random moments, restarted each time, and
# at the end its counts must equal exactly what it acknowledged (retried idempotency keys once).
#
#   Tests/crash/crash-test.sh [kills] [seed]       (TALLY=path/to/tally to choose the binary)
#
# The load generator retries every unanswered batch with the same idempotency key, so a batch
# whose answer was lost in a crash is either replayed from the log (counted once) or was never
# durable and is counted when it arrives again. Checkpoints run every 300 ms, so restarts recover
# from a checkpointed image plus the log after it.
set -euo pipefail

kills=${1:-10}
seed=${2:-$RANDOM}
RANDOM=$seed
tally=${TALLY:-.build/debug/tally}
dir=$(mktemp -d /tmp/tally-crash.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
key=crash-test-key
hash=$("$tally" config hash-key "$key")
cat > "$dir/node.yaml" <<YAML
node: crash-1
region: test
listen: 127.0.0.1:$port
data_dir: $dir/data
api_keys:
  - name: crash
    sha256: $hash
storage:
  # Often, so that kills land before, during and after checkpoints.
  checkpoint_interval: 300ms
YAML
echo "crash test: $kills kills, seed $seed, port $port, files in $dir"

node_pid=""
start_node() {
    "$tally" serve --config "$dir/node.yaml" >> "$dir/node.log" 2>&1 &
    node_pid=$!
    for _ in $(seq 1 300); do
        if curl -fsS "http://127.0.0.1:$port/health" > /dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "node did not come up"; tail -20 "$dir/node.log"; exit 1
}
cleanup() {
    [[ -n "$node_pid" ]] && kill -9 "$node_pid" 2> /dev/null || true
    [[ -n "${load_pid:-}" ]] && kill -9 "$load_pid" 2> /dev/null || true
}
trap cleanup EXIT

start_node
duration=$((kills * 2 + 10))
"$tally" load --target "http://127.0.0.1:$port" --key "$key" --rate 3000 --duration "$duration" \
    --batch 100 --concurrency 8 --services 4 --operations 8 --seed "$seed" --retry-for 60 > "$dir/load.log" 2>&1 &
load_pid=$!

for i in $(seq 1 "$kills"); do
    # A random moment 0.5 to 2 s from now.
    sleep "$(printf '%d.%03d' $((RANDOM % 2)) $((RANDOM % 1000)))"
    sleep 0.5
    kill -9 "$node_pid"
    wait "$node_pid" 2> /dev/null || true
    echo "kill $i: node killed with SIGKILL; restarting"
    start_node
done

status=0
wait "$load_pid" || status=$?
load_pid=""
cat "$dir/load.log"
replays=$(grep -c "recovered" "$dir/node.log" || true)
from_image=$(grep "recovered" "$dir/node.log" | grep -vc "checkpoint_sequence=0 " || true)
echo "node started $replays times (1 + $kills restarts), $from_image of them from a checkpointed image"
if [[ $status -ne 0 ]]; then
    echo "CRASH TEST FAILED (load exit $status); replay with: Tests/crash/crash-test.sh $kills $seed"
    tail -20 "$dir/node.log"
    exit 1
fi
grep -q "equal to the acknowledged" "$dir/load.log" || { echo "CRASH TEST FAILED: no exact match"; exit 1; }
[[ "$replays" -eq $((kills + 1)) ]] || { echo "CRASH TEST FAILED: expected $((kills + 1)) starts"; exit 1; }
[[ "$from_image" -ge 1 ]] || { echo "CRASH TEST FAILED: no restart recovered from a checkpoint"; exit 1; }

# The store is lost (deleted) while the identity file beside it stays: the node must come back as a
# new origin, never run empty under its old one, and count what it acknowledges from then on.
origin() { curl -fsS -H "Authorization: Bearer $key" "http://127.0.0.1:$port/v1/cluster" | python3 -c 'import json, sys; print(json.load(sys.stdin)["origin"])'; }
old_origin=$(origin)
kill -9 "$node_pid"
wait "$node_pid" 2> /dev/null || true
rm -f "$dir/data/tally.sqlite" "$dir/data/tally.sqlite-wal" "$dir/data/tally.sqlite-shm"
[[ -f "$dir/data/incarnation" ]] || { echo "CRASH TEST FAILED: no identity file to keep"; exit 1; }
start_node
new_origin=$(origin)
echo "store lost, identity file kept: origin $old_origin -> $new_origin"
[[ "$new_origin" != "$old_origin" ]] || { echo "CRASH TEST FAILED: the node reused its old origin over a lost store"; exit 1; }
grep -q "starting as a new origin" "$dir/node.log" || { echo "CRASH TEST FAILED: no log line for the new origin"; exit 1; }
"$tally" load --target "http://127.0.0.1:$port" --key "$key" --rate 2000 --duration 2 --batch 100 \
    --concurrency 4 --services 2 --operations 2 --seed "$seed" > "$dir/load-after.log" 2>&1 \
    || { echo "CRASH TEST FAILED after the store loss"; cat "$dir/load-after.log"; exit 1; }
grep "node reports" "$dir/load-after.log"
grep -q "equal to the acknowledged" "$dir/load-after.log" || { echo "CRASH TEST FAILED: counts after the store loss"; exit 1; }
rm -rf "$dir"
echo "crash test passed: $kills kills, totals exact; a lost store came back as a new origin"
