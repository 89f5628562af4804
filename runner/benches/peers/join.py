"""Joins one tool's per-request export with the simulator's truth log by request id and prints
one JSON line: the tool's TTFT error against the truth (per request: p50/p99, split into send
and receive sides; and distribution-level: tool TTFT p50/p99 minus truth p50/p99), how many
requests it completed, the rate it achieved, and its CPU time and peak RSS.

Truth (docs/performance.md): true TTFT = first_token_written_unix_us - received_unix_us (the
simulator's hand-over of the first token's frame minus the kernel's receipt of the request).

    python3 join.py TOOL DIR STREAMS QPS COUNT EXIT_STATUS TOOL_CPUS
"""

import glob
import json
import sys


def quantile(values, q):
    if not values:
        return None
    values = sorted(values)
    rank = max(1, min(len(values), int(-(-len(values) * q // 1))))
    return values[rank - 1]


def tool_requests(tool, d):
    """(request id, start in Unix µs, TTFT in µs) of every successful measured request."""
    out = []
    if tool == "aiperf":
        for line in open(f"{d}/out/profile_export.jsonl"):
            r = json.loads(line)
            meta, metrics = r.get("metadata", {}), r.get("metrics", {})
            if meta.get("benchmark_phase") != "profiling":
                continue
            ttft = metrics.get("time_to_first_token", {}).get("value")
            if ttft is None or r.get("error"):
                continue
            out.append((meta["x_request_id"], meta["request_start_ns"] / 1e3, ttft * 1e3))
    else:
        from datetime import datetime
        for path in glob.glob(f"{d}/out/peer/*_individual_responses.json"):
            for r in json.load(open(path)):
                if r.get("error_code") is not None or r.get("client_ttft_s") is None:
                    continue
                start = datetime.fromisoformat(r["start_timestamp"].replace("Z", "+00:00"))
                start_us = int(start.timestamp()) * 1_000_000 + start.microsecond
                out.append((r["request_id"], start_us, r["client_ttft_s"] * 1e6))
    return out


def main():
    tool, d, streams, qps, count, status = sys.argv[1:7]
    cpus = sys.argv[7] if len(sys.argv) > 7 else "0"
    truth = {}
    for line in open(f"{d}/truth.jsonl"):
        t = json.loads(line)
        truth[t["request_id"]] = t
    ttft_err, send, recv, tool_ttft, true_ttft, starts = [], [], [], [], [], []
    unjoined = 0
    for rid, start_us, ttft_us in tool_requests(tool, d):
        t = truth.get(rid)
        if not t or t.get("first_token_written_unix_us") is None:
            unjoined += 1
            continue
        arrival = t.get("received_unix_us") or t["arrival_unix_us"]
        truth_us = t["first_token_written_unix_us"] - arrival
        ttft_err.append(ttft_us - truth_us)
        send.append(arrival - start_us)
        recv.append(start_us + ttft_us - t["first_token_written_unix_us"])
        tool_ttft.append(ttft_us)
        true_ttft.append(truth_us)
        starts.append(start_us)
    starts.sort()
    achieved = (len(starts) - 1) / ((starts[-1] - starts[0]) / 1e6) if len(starts) > 2 else None
    try:
        wall, user, sys_, rss = open(f"{d}/time.txt").read().split()[-4:]
        cpu, rss_kib = float(user) + float(sys_), int(rss)
    except (OSError, ValueError):
        wall, cpu, rss_kib = None, None, None
    q = lambda v: {"p50": quantile(v, 0.5), "p99": quantile(v, 0.99)}
    print(json.dumps({
        "tool": tool, "tool_cpus": cpus, "streams": int(streams), "target_qps": float(qps), "requests": int(count),
        "exit_status": int(status), "joined": len(ttft_err), "unjoined": unjoined,
        "achieved_qps": achieved,
        "ttft_error_us": q(ttft_err), "send_side_us": q(send), "receive_side_us": q(recv),
        "distribution_error_us": {
            "p50": (quantile(tool_ttft, 0.5) or 0) - (quantile(true_ttft, 0.5) or 0) if tool_ttft else None,
            "p99": (quantile(tool_ttft, 0.99) or 0) - (quantile(true_ttft, 0.99) or 0) if tool_ttft else None,
        },
        "true_ttft_us": q(true_ttft),
        "tool_wall_s": float(wall) if wall else None, "tool_cpu_s": cpu, "tool_peak_rss_kib": rss_kib,
    }))


main()
