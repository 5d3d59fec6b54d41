#!/usr/bin/env bash
# Builds the libFuzzer target (Tests/fuzz/FuzzMain.swift) over TallyAggregates, TallyReplica and the
# node's event parser, with AddressSanitizer, and runs it for a bounded time:
#   Tests/fuzz/run.sh [seconds] [workdir]
# The corpus starts from seeds written by this script (valid bodies and messages); a crash leaves
# its input in the workdir, and the script exits non-zero naming it. Replay one with
#   WORKDIR/fuzz WORKDIR/crash-<hash>
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
work=${2:-$(mktemp -d /tmp/tally-fuzz.XXXXXX)}
mkdir -p "$work/corpus"
# The C bucket tables are header-only (static const arrays): a module map over the header is all
# the Swift modules need to import them.
mkdir -p "$work/CTallyBucketTables"
cat > "$work/CTallyBucketTables/module.modulemap" <<MAP
module CTallyBucketTables {
    header "$PWD/Sources/CTallyBucketTables/include/tally_bucket_tables.h"
    export *
}
MAP
flags=(-sanitize=fuzzer,address -parse-as-library -O -g -swift-version 6 -package-name tally
    -I "$work/CTallyBucketTables")
shopt -s globstar
swiftc "${flags[@]}" -emit-module -emit-library -static -module-name TallyAggregates \
    -emit-module-path "$work/TallyAggregates.swiftmodule" -o "$work/libTallyAggregates.a" \
    Sources/TallyAggregates/**/*.swift
swiftc "${flags[@]}" -emit-module -emit-library -static -module-name TallyReplica -I "$work" \
    -emit-module-path "$work/TallyReplica.swiftmodule" -o "$work/libTallyReplica.a" \
    Sources/TallyReplica/**/*.swift
swiftc "${flags[@]}" -module-name TallyFuzz -I "$work" -L "$work" -lTallyReplica -lTallyAggregates \
    -o "$work/fuzz" Tests/fuzz/FuzzMain.swift Sources/TallyNode/HTTP/EventParser.swift \
    Sources/TallyProtocols/OTLP/TraceDecoder.swift Sources/TallyProtocols/OTLP/WireReader.swift \
    Sources/TallyProtocols/OTLP/SpanMapping.swift Sources/TallyProtocols/StatsD/StatsDParser.swift \
    Sources/TallyProtocols/StatsD/StatsDMapping.swift \
    2>&1 | grep -v "Cannot export local symbol" || true
[[ -x "$work/fuzz" ]] || { echo "fuzz target did not build"; exit 1; }
# Seeds: a JSON array and NDJSON body (selector bytes 0 and 1), and ticks.
printf '\x00[{"service":"s","operation":"o","status":200,"latency":12.5,"user":"u1","timestamp":1795946399000}]' > "$work/corpus/json"
printf '\x01{"service":"s","operation":"o","status":503,"latency":"12ms","timestamp":"2026-11-29T10:00:00Z"}\n' > "$work/corpus/ndjson"
printf '\x05' > "$work/corpus/tick"
printf '\x07checkout.get_cart:12.5|ms|@0.5|#status:503\nlogins:3|c\nusers:u1|s' > "$work/corpus/statsd"
# An OTLP export of one SERVER span (service s, trace and span ids, name, kind, times).
printf '\x06\x0a\x4f\x0a\x15\x0a\x13\x0a\x0cservice.name\x12\x03\x0a\x01s\x12\x36\x12\x34\x0a\x10AAAAAAAAAAAAAAAA\x12\x08BBBBBBBB\x2a\x02op\x30\x02\x39\x01\x00\x00\x00\x00\x00\x00\x00\x41\x02\x00\x00\x00\x00\x00\x00\x00' > "$work/corpus/otlp"
echo "fuzzing for $seconds s in $work"
status=0
(cd "$work" && ./fuzz -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 corpus 2>&1 | tail -25) || status=$?
if ls "$work"/crash-* > /dev/null 2>&1; then
    echo "FUZZ FAILED: crashing inputs in $work: $(ls "$work"/crash-*)"
    exit 1
fi
[[ $status -eq 0 ]] || { echo "FUZZ FAILED: the fuzzer exited $status"; exit 1; }
echo "fuzz passed: no crash in $seconds s"
