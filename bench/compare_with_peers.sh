#!/usr/bin/env bash
# The speed comparison of README's "Speed" table: our agent beside rsyslog and syslog-ng in the
# shared load harness (../shared/bench, see its README), every scenario to files, medians of RUNS.
#
#   PEERS_DIR=/tmp/peers HARNESS=../shared/bench/ ./bench/compare_with_peers.sh RESULTS_DIR
#
# Needs the peers and load generators installed by the harness's install_peers.sh (into PEERS_DIR)
# and this checkout installed (`pip install -e .`, which builds the compiled accelerators) into the
# Python that AGENT_PYTHON names (default: python3). Writes RESULTS_DIR/{peers,pure}.jsonl and
# prints the harness's summary table of each. `pure` repeats two scenarios of ours with
# KUBEFLUME_PURE_PYTHON=1: what the compiled accelerators are worth.
set -euo pipefail
results=$(realpath "$1")
mkdir -p "$results"
harness=$(realpath "${HARNESS:?set HARNESS to the shared bench folder}")
repo=$(realpath "$(dirname "$0")/..")
: "${PEERS_DIR:?set PEERS_DIR to where install_peers.sh put the peers}"
export RSYSLOGD=$PEERS_DIR/rsyslog/usr/sbin/rsyslogd
RSYSLOG_MODDIR=$(ls -d "$PEERS_DIR"/rsyslog/usr/lib/*/rsyslog | head -1)
export RSYSLOG_MODDIR
python=${AGENT_PYTHON:-python3}
# --no-metrics: the harness picks the ports; the metrics server would need one of its own
export AGENT_CMD="exec $python -m kubeflume_agent.cli --conf-file \$BENCH_CONF --name a1 --no-metrics --no-reload-conf"
AGENT_VERSION_CMD="echo kubeflume $(git -C "$repo" rev-parse --short HEAD)"
export AGENT_VERSION_CMD
events=${EVENTS:-300000}
runs=${RUNS:-3}
cd "$harness"

bench() {  # bench RESULTS_FILE SUT SCENARIO [harness options...]
  local file=$1 sut=$2 scenario=$3
  shift 3
  python3 bench.py --sut "$sut" --scenario "$scenario" --mode file --events "$events" --runs "$runs" \
      --results "$file" "$@" | grep -E '^(#|run .*error)' || true
}

for sut in rsyslog syslog-ng ours; do
  for scenario in syslog_tcp_mixed syslog_tcp plain_tcp; do
    bench "$results/peers.jsonl" "$sut" "$scenario"
    bench "$results/peers.jsonl" "$sut" "$scenario" --tcp-gen socat
  done
  bench "$results/peers.jsonl" "$sut" syslog_udp
done
bench "$results/peers.jsonl" ours http_json
# rsyslog with the 4 MiB UDP receive buffer our syslogudp source asks for
bench "$results/udp-rcvbuf.jsonl" rsyslog syslog_udp --conf-template "$repo/bench/peers/rsyslog-syslog_udp-rcvbuf4m.conf"
KUBEFLUME_PURE_PYTHON=1 bench "$results/pure.jsonl" ours syslog_tcp_mixed
KUBEFLUME_PURE_PYTHON=1 bench "$results/pure.jsonl" ours syslog_tcp --tcp-gen socat
for file in peers udp-rcvbuf pure; do
  echo "## $file"
  python3 summarize.py "$results/$file.jsonl"
done
