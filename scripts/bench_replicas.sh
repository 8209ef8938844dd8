#!/usr/bin/env bash
# One replica against two on the same NATS JetStream, from the same outside load generator
# (h2load, Debian's nghttp2-client, pre-encoded unary Calibrate bodies on published BTC): the
# release binary, market state, audit and split on a nats-server this script starts. Two
# replicas on a two-core machine share its CPU with each other, NATS and h2load: the ratio says
# what replication costs here, not what a second machine adds. Counts only calls gRPC answered
# OK: every replica's /metrics must show zero shed calls.
#   ./scripts/bench_replicas.sh              # 5 s per row
set -euo pipefail
cd "$(dirname "$0")/.."
ROW_SECONDS="${SECONDS_PER_ROW:-5}"

. scripts/bench_setup.sh
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
nats_port=$(free_port)
/usr/sbin/nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$work/nats" >/dev/null 2>&1 & pids+=($!)

# start_replica NAME: a replica on the NATS server; prints "port metrics_port".
start_replica() {
  local port metrics; port=$(free_port); metrics=$(free_port)
  target/release/foresight-serve --config "$work/serve.toml" --registry models --state "nats://127.0.0.1:$nats_port" \
      --reload-interval 0 --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$metrics" 2>"$work/$1.log" & pids+=($!)
  for _ in $(seq 100); do curl -s "http://127.0.0.1:$metrics/metrics" >/dev/null && break; sleep 0.1; done
  echo "$port $metrics"
}
read -r a_port a_metrics < <(start_replica a)
target/debug/foresight publish --asset BTC --data data/btc_usdt_1d.csv --rv-data data/btc_usdt_2h.csv \
    --implied-vol-data data/btc_dvol_1d.csv --server "http://127.0.0.1:$a_port" >/dev/null

spot=$(tail -1 data/btc_usdt_1d.csv | cut -d, -f5)
printf 'account_id: "h2load-account"\npositions { underlying: "BTC" quantity: 2 linear {} }\npositions { underlying: "BTC" quantity: -1 option { type: CALL strike: %s expiry_years: 0.1 } }\n' "$spot" > "$work/request.txtpb"
protoc --proto_path=proto --encode=foresight.v1.CalibrateRequest foresight/v1/calibration.proto < "$work/request.txtpb" > "$work/request.pb"
python3 -c 'import struct,sys; b=open(sys.argv[1],"rb").read(); sys.stdout.buffer.write(struct.pack(">BI",0,len(b))+b)' "$work/request.pb" > "$work/calibrate.body"

# load PORT CONNECTIONS STREAMS OUT: h2load on one replica, its OK calls/s into OUT.
load() {
  h2load -D "$ROW_SECONDS" --warm-up-time=1 -c "$2" -m "$3" -t 1 -d "$work/calibrate.body" \
      -H 'content-type: application/grpc' -H 'te: trailers' "http://127.0.0.1:$1/foresight.v1.CalibrationService/Calibrate" > "$4.out"
  python3 -c "import re,sys; t=open(sys.argv[1]).read(); ok=int(re.search(r'status codes: (\d+) 2xx', t).group(1)); s=float(re.search(r'finished in ([\d.]+)s', t).group(1)); print(round(ok/s))" "$4.out" > "$4"
}
shed() { curl -s "http://127.0.0.1:$1/metrics" | awk '$1 == "foresight_shed_total" { print $2 + 0 }'; }

load "$a_port" 1 1 "$work/warm"  # the day's forecast, cached
load "$a_port" 4 16 "$work/one"
one=$(cat "$work/one")
read -r b_port b_metrics < <(start_replica b)
load "$b_port" 1 1 "$work/warm"
load "$a_port" 2 16 "$work/two_a" & first=$!
load "$b_port" 2 16 "$work/two_b"
wait "$first"
two=$(( $(cat "$work/two_a") + $(cat "$work/two_b") ))
echo "| replicas on one nats-server (4 connections × 16 streams in all) | Calibrate calls/s | vs one |"
echo "|---|---:|---:|"
echo "| 1 | $one | 100% |"
echo "| 2 (2 × 16 each, run together) | $two | $(python3 -c "print(f'{$two / $one:.0%}')") |"
for m in "$a_metrics" "$b_metrics"; do
  [ "$(shed "$m")" = 0 ] || { echo "error: calls were shed; the figures above count them as answered" >&2; exit 1; }
done
echo
echo "0 calls shed on either replica; every call's audit line acknowledged by JetStream before it returned."
