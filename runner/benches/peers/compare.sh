#!/usr/bin/env bash
# Side by side with a peer: AIPerf and coebench against the same `coebench simulate`
# (OpenAI mode, usage on, ground-truth log), at the same loads, each tool pinned to CPU 0 and
# the simulator to CPU 1. Every request is joined with its truth record by X-Request-ID (both
# tools send one), and each tool's TTFT error is reported against the truth (join.py).
#
#   bash runner/benches/peers/compare.sh [streams ...]      # default: 1 100 1000 2000 5000
#   PEER_TOOLS=aiperf PEER_TOOL_CPUS=0,1 bash runner/benches/peers/compare.sh 1000 2000   # both cores
#   sudo-free real-time priority for cleaner figures:  chrt -f 10 bash runner/benches/peers/compare.sh
#
# Needs the release binary (cargo build --release -p coebench-runner --bin coebench) and AIPerf
# in target/peers/aiperf (python3 -m venv target/peers/aiperf && target/peers/aiperf/bin/pip
# install aiperf==0.13.0). AIPerf's built-in tokenizer (tiktoken o200k_base) is served from the
# copy tiktoken-rs ships, so nothing is downloaded. Results: target/peers/compare/results.jsonl.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
out="$root/target/peers/compare"
coebench="$root/target/release/coebench"
aiperf="$root/target/peers/aiperf/bin/aiperf"
tokens="${PEER_TOKENS:-12}"   # output tokens per request
rate="${PEER_RATE:-4}"        # decode tokens/s per stream: a stream lasts tokens/rate s
tools="${PEER_TOOLS:-coebench aiperf}"
tool_cpus="${PEER_TOOL_CPUS:-0}"   # CPUs the tool may use; the simulator always has CPU 1
streams=("$@")
[ ${#streams[@]} -gt 0 ] || streams=(1 100 1000 2000 5000)
[ -x "$coebench" ] || { echo "build $coebench first" >&2; exit 2; }
[ -x "$aiperf" ] || { echo "install AIPerf into target/peers/aiperf first" >&2; exit 2; }
mkdir -p "$out"

# tiktoken looks its encoding up under the SHA-1 of the URL it would download it from.
cache="$out/tiktoken-cache"
mkdir -p "$cache"
key="$(printf %s https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken | sha1sum | cut -d' ' -f1)"
if [ ! -s "$cache/$key" ]; then
  cp "$(ls ~/.cargo/registry/src/*/tiktoken-rs-*/assets/o200k_base.tiktoken | tail -1)" "$cache/$key"
fi
export TIKTOKEN_CACHE_DIR="$cache" HF_HUB_OFFLINE=1

cat > "$out/sim.yaml" <<YAML
api: openai
batching_window_ms: 2
executors: 1000
memory: {ddr_capacity_gb: 100, hbm_capacity_gb: 100, load_bandwidth_gb_per_s: 1000}
models:
  - name: fidelity
    weights_gb: 1
    prefill_tokens_per_sec: 1000000
    batch_sizes: [1, 8, 32]
    decode_tokens_per_sec: [$rate, $rate, $rate]
    max_sequence_length: 4096
YAML

port=18181
for n in "${streams[@]}"; do
  # Open loop at n / stream duration requests/s: about n streams open at once, out of phase.
  qps="$(python3 -c "print(round($n * $rate / $tokens, 4))")"
  count="$(python3 -c "print(max(10, int($n * 3)))")"
  for tool in $tools; do
    dir="$out/$tool-c$n-cpus${tool_cpus/,/}"
    rm -rf "$dir"; mkdir -p "$dir"
    port=$((port + 1))
    taskset -c 1 "$coebench" simulate --config "$out/sim.yaml" --listen "127.0.0.1:$port" \
      --truth-log "$dir/truth.jsonl" >"$dir/sim.log" 2>&1 &
    sim=$!
    for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    case "$tool" in
      coebench)
        cmd=("$coebench" run --api openai --url "http://127.0.0.1:$port/v1" --model fidelity
          --input-tokens 32 --output-tokens "$tokens" --num-requests "$count" --qps "$qps"
          --qps-distribution constant --run-name peer --output-files-dir "$dir/out"
          --consolidated-results-dir "$dir/consolidated" --no-progress) ;;
      aiperf)
        cmd=("$aiperf" profile --model fidelity --url "http://127.0.0.1:$port" --endpoint-type chat
          --streaming --tokenizer builtin --use-server-token-count --extra-inputs ignore_eos:true
          --isl 32 --prompt-input-tokens-stddev 0 --osl "$tokens" --prompt-output-tokens-stddev 0
          --request-rate "$qps" --arrival-pattern constant --request-count "$count"
          --warmup-request-count 10 --output-artifact-dir "$dir/out" --ui-type none
          --no-server-metrics --no-gpu-telemetry) ;;
    esac
    echo "== $tool, $n streams ($qps requests/s, $count requests): ${cmd[*]}" | tee "$dir/command.txt"
    status=0
    taskset -c "$tool_cpus" /usr/bin/time -f '%e %U %S %M' -o "$dir/time.txt" "${cmd[@]}" >"$dir/tool.log" 2>&1 || status=$?
    kill -INT "$sim"; wait "$sim" || true
    python3 "$root/runner/benches/peers/join.py" "$tool" "$dir" "$n" "$qps" "$count" "$status" "$tool_cpus" \
      | tee -a "$out/results.jsonl"
  done
done
