#!/usr/bin/env bash
# Unary Calibrate against the same server's grpc.health.v1.Health/Check, driven by an outside
# HTTP/2 load generator (h2load, Debian's nghttp2-client) with pre-encoded gRPC bodies: the
# release binary, BTC published to its market state, audit log buffered. Counts only calls gRPC
# answered OK: h2load counts HTTP 200 even when the trailer says RESOURCE_EXHAUSTED, so the
# server's /metrics must show zero shed calls and one posted margin per Calibrate call.
#   ./scripts/bench_h2load.sh              # 5 s per row
#   SECONDS_PER_ROW=10 ./scripts/bench_h2load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROW_SECONDS="${SECONDS_PER_ROW:-5}"

. scripts/bench_setup.sh
port=$(free_port); metrics_port=$(free_port)
target/release/foresight-serve --config "$work/serve.toml" --registry models --state-dir "$work/state" --durability buffered --reload-interval 0 \
    --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$metrics_port" 2>"$work/serve.log" &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  curl -s "http://127.0.0.1:$metrics_port/metrics" >/dev/null && break
  sleep 0.1
done
target/debug/foresight publish --asset BTC --data data/btc_usdt_1d.csv --rv-data data/btc_usdt_2h.csv \
    --implied-vol-data data/btc_dvol_1d.csv --server "http://127.0.0.1:$port" >/dev/null

# The bodies: a gRPC frame (flag, big-endian length) around the protobuf message.
spot=$(tail -1 data/btc_usdt_1d.csv | cut -d, -f5)
cat > "$work/request.txtpb" <<TXT
account_id: "h2load-account"
positions { underlying: "BTC" quantity: 2 linear {} }
positions { underlying: "BTC" quantity: -1 option { type: CALL strike: $spot expiry_years: 0.1 } }
TXT
protoc --proto_path=proto --encode=foresight.v1.CalibrateRequest foresight/v1/calibration.proto < "$work/request.txtpb" > "$work/request.pb"
frame() { python3 -c 'import struct,sys; b=open(sys.argv[1],"rb").read(); sys.stdout.buffer.write(struct.pack(">BI",0,len(b))+b)' "$1"; }
frame "$work/request.pb" > "$work/calibrate.body"
: > "$work/empty.pb"; frame "$work/empty.pb" > "$work/health.body"

# CalibrateBatch: a seeded book of 1000 distinct accounts (1 to 4 positions each, futures, calls
# and puts with their own sizes, strikes and expiries), BTC from the market state.
python3 - "$spot" > "$work/batch.txtpb" <<'PY'
import random, sys
spot = float(sys.argv[1]); rng = random.Random(42)
for i in range(1000):
    print("accounts {", f'account_id: "book-{i}"')
    for _ in range(rng.randint(1, 4)):
        size = rng.uniform(0.01, 50) * rng.choice([1, -1])
        if rng.random() < 0.5:
            print(f'  positions {{ underlying: "BTC" quantity: {size!r} linear {{}} }}')
        else:
            kind = rng.choice(["CALL", "PUT"])
            print(f'  positions {{ underlying: "BTC" quantity: {size!r} option {{ type: {kind} strike: {spot * rng.uniform(0.6, 1.6)!r} expiry_years: {rng.uniform(1 / 365, 1.0)!r} }} }}')
    print("}")
PY
protoc --proto_path=proto --encode=foresight.v1.CalibrateBatchRequest foresight/v1/calibration.proto < "$work/batch.txtpb" > "$work/batch.pb"
frame "$work/batch.pb" > "$work/batch.body"

metric() { curl -s "http://127.0.0.1:$metrics_port/metrics" | awk -v m="$1" '$1 ~ "^"m { s += $2 } END { print s + 0 }'; }
# The server's CPU time so far, in clock ticks (user + system).
server_ticks() { awk '{ print $14 + $15 }' "/proc/$server/stat"; }
ticks_per_second=$(getconf CLK_TCK)
# Requests per second that finished with HTTP 200; the server's CPU microseconds per request
# of the run go to $work/cpu_per_call.
run() { # path body connections streams
  local before; before=$(server_ticks)
  h2load -D "$ROW_SECONDS" --warm-up-time=1 -c "$3" -m "$4" -t "$(( $3 < 2 ? 1 : 2 ))" -d "$2" \
      -H 'content-type: application/grpc' -H 'te: trailers' "http://127.0.0.1:$port$1" > "$work/h2load.out"
  local after; after=$(server_ticks)
  local ok; ok=$(awk '/^status codes:/ { print $3 }' "$work/h2load.out")
  local secs; secs=$(awk '/^finished in/ { gsub(/s,/, "", $3); print $3 }' "$work/h2load.out")
  # (The warm-up second's requests are not counted by h2load: a slight overestimate per call.)
  python3 -c "print(round(($after - $before) / $ticks_per_second * 1e6 / max($ok, 1)))" > "$work/cpu_per_call"
  python3 -c "print(round($ok / $secs))"
}

run /foresight.v1.CalibrationService/Calibrate "$work/calibrate.body" 1 1 >/dev/null  # warm the forecast cache
echo "| connections × streams | Health/Check calls/s | Calibrate calls/s | Calibrate / Health | server CPU µs per Health/Check | per Calibrate |"
echo "|---|---:|---:|---:|---:|---:|"
before=$(metric 'foresight_calibrations_total.*posted="true"')
for shape in "1 1" "2 8" "4 16"; do
  set -- $shape
  health=$(run /grpc.health.v1.Health/Check "$work/health.body" "$1" "$2"); health_cpu=$(cat "$work/cpu_per_call")
  calibrate=$(run /foresight.v1.CalibrationService/Calibrate "$work/calibrate.body" "$1" "$2"); calibrate_cpu=$(cat "$work/cpu_per_call")
  echo "| $1 × $2 | $health | $calibrate | $(python3 -c "print(f'{$calibrate / $health:.0%}')") | $health_cpu | $calibrate_cpu |"
done
echo
echo "| CalibrateBatch, 1000 varied accounts | connections × streams | calls/s | accounts/s |"
echo "|---|---|---:|---:|"
for shape in "1 1" "1 2" "2 2"; do
  set -- $shape
  calls=$(run /foresight.v1.CalibrationService/CalibrateBatch "$work/batch.body" "$1" "$2")
  echo "| audit buffered | $1 × $2 | $calls | $(( calls * 1000 )) |"
done
shed=$(metric foresight_shed_total)
posted=$(( $(metric 'foresight_calibrations_total.*posted="true"') - before ))
echo
echo "shed calls: $shed; margins posted during the rows: $posted"
[ "$shed" = 0 ] || { echo "error: calls were shed; the figures above count them as answered" >&2; exit 1; }
