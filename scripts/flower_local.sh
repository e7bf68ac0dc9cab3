#!/usr/bin/env bash
# Run examples/flower_app on Flower's deployment engine on this machine, every piece a separate process:
# one SuperLink, N SuperNodes and `flwr run`, all on 127.0.0.1 with free ports chosen now.
# Every process is started in its own session and stopped by its PID (its process group) on exit, also on
# failure or Ctrl-C. Nothing but 127.0.0.1 is contacted (telemetry off, no runtime dependency install).
#
# Usage: scripts/flower_local.sh [--clients N] [--rounds R] [--results DIR] [--timeout SECONDS]
#                                [--run-config 'key=value ...']
# Example: scripts/flower_local.sh --clients 3 --rounds 5 --results /tmp/fl-results
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
BIN="$(dirname "$PYTHON")"
export PATH="$BIN:$PATH"                    # the SuperLink and SuperNodes start flower-superexec from PATH
CLIENTS=3
ROUNDS=5
RESULTS=""
TIMEOUT=300
EXTRA_CONFIG=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --clients) CLIENTS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --results) RESULTS="$2"; shift 2 ;;
    --timeout) TIMEOUT="$2"; shift 2 ;;
    --run-config) EXTRA_CONFIG="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

WORK="$(mktemp -d -t fedmodel-flower.XXXXXX)"
RESULTS="${RESULTS:-$WORK/results}"
export FLWR_HOME="$WORK/flwr-home"          # Flower's config.toml, installed apps: all in the temp dir
export FLWR_TELEMETRY_ENABLED=0             # Flower would otherwise post usage events to its server
mkdir -p "$FLWR_HOME" "$RESULTS"
PIDS=()

stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.2
  done
  for pid in "${PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  echo "stopped processes (by PID): ${PIDS[*]:-none}; logs in $WORK"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

free_port() { "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_for_port() {  # wait_for_port PORT SECONDS PID
  "$PYTHON" - "$1" "$2" "$3" <<'EOF'
import os, socket, sys, time
port, deadline, pid = int(sys.argv[1]), time.monotonic() + float(sys.argv[2]), int(sys.argv[3])
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(f"process {pid} exited before listening on 127.0.0.1:{port}")
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit(f"nothing listens on 127.0.0.1:{port}")
EOF
}

LINK_PORT="$(free_port)"
setsid "$BIN/flower-superlink" --insecure --host 127.0.0.1 --port "$LINK_PORT" \
  --disable-runtime-dependency-installation >"$WORK/superlink.log" 2>&1 &
PIDS+=("$!")
wait_for_port "$LINK_PORT" 60 "${PIDS[0]}" || { tail -5 "$WORK/superlink.log" >&2; exit 1; }
echo "SuperLink (PID ${PIDS[0]}) on 127.0.0.1:$LINK_PORT"

for ((i = 0; i < CLIENTS; i++)); do
  NODE_PORT="$(free_port)"
  setsid "$BIN/flower-supernode" --insecure --superlink "127.0.0.1:$LINK_PORT" --host 127.0.0.1 --port "$NODE_PORT" \
    --node-config "partition-id=$i num-partitions=$CLIENTS" >"$WORK/supernode-$i.log" 2>&1 &
  PIDS+=("$!")
  echo "SuperNode $i (PID $!) on 127.0.0.1:$NODE_PORT"
done

cat >"$FLWR_HOME/config.toml" <<EOF
[superlink]
default = "loopback"

[superlink.loopback]
address = "127.0.0.1:$LINK_PORT"
insecure = true
EOF

CONFIG="num-rounds=$ROUNDS num-partitions=$CLIENTS min-nodes=$CLIENTS results-dir=\"$RESULTS\" $EXTRA_CONFIG"
echo "flwr run examples/flower_app loopback --run-config '$CONFIG'"
timeout "$TIMEOUT" "$BIN/flwr" run "$ROOT/examples/flower_app" loopback --stream --run-config "$CONFIG" \
  >"$WORK/flwr-run.log" 2>&1 || { echo "flwr run failed, see $WORK/flwr-run.log" >&2; tail -30 "$WORK/flwr-run.log" >&2; exit 1; }

if [[ ! -f "$RESULTS/results.json" ]]; then
  echo "the ServerApp wrote no $RESULTS/results.json; see $WORK/flwr-run.log" >&2
  tail -30 "$WORK/flwr-run.log" >&2
  exit 1
fi
"$PYTHON" - "$RESULTS/results.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
for rnd in r["rounds"]:
    test = rnd["test"]
    print(f"round {rnd['round']}: {len(rnd['aggregated'])} clients aggregated, {len(rnd['failures'])} dropped, "
          f"test accuracy {test.get('accuracy', float('nan')):.4f}, loss {test.get('loss', float('nan')):.4f}")
for f in r["failures"]:
    print(f"  round {f['round']}: node {f['node_id']} (partition {f['partition_id']}) dropped: {f['reason']}")
print(f"results: {sys.argv[1]}")
EOF
