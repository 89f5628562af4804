"""Markdown tables from the fidelity bench's raw results (FIDELITY_JSON): for each point, the
median over its repeats and, in parentheses, the min-max spread, as docs/performance.md shows
them. Errors and delays in microseconds.

    python3 runner/benches/fidelity/tables.py docs/perf/fidelity.json [errors|schedule|memory|https|scale]

(`scale` reads the results of the `scale` scenario, one run per point.)
"""

import json
import statistics
import sys


def spread(values, fmt="{:.0f}"):
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    med = statistics.median(values)
    if len(values) == 1 or min(values) == max(values):
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def points(doc, scenarios):
    out = {}
    for run in doc["runs"]:
        p = run["point"]
        if p["scenario"] in scenarios:
            out.setdefault((p["scenario"], p["label"]), []).append(run)
    return out


def err(runs, key, q):
    return spread([r["errors"][key][q] if r["errors"][key]["n"] else None for r in runs])


def errors(doc):
    print("| scenario | point | runs | TTFT p50 | TTFT p99 | send p50 | send p99 | receive p50 | receive p99 "
          "| ITL p50 | ITL p99 | abs ITL p99 | e2e p50 | e2e p99 |")
    print("|" + "---|" * 14)
    for (s, label), runs in points(doc, {"streams", "max-streams", "max-rate", "open-loop"}).items():
        print(f"| {s} | {label} | {len(runs)} | {err(runs,'ttft','p50')} | {err(runs,'ttft','p99')} "
              f"| {err(runs,'send_side','p50')} | {err(runs,'send_side','p99')} | {err(runs,'receive_side','p50')} "
              f"| {err(runs,'receive_side','p99')} | {err(runs,'itl','p50')} | {err(runs,'itl','p99')} "
              f"| {err(runs,'itl_abs','p99')} | {err(runs,'e2e','p50')} | {err(runs,'e2e','p99')} |")


def schedule(doc):
    print("| scenario | point | target rps | achieved rps | dispatch p50 | dispatch p99 | peak in flight "
          "| client CPU ms / 1k tokens | event-loop lag p99 | flagged saturated | simulator timer lag p99 |")
    print("|" + "---|" * 11)
    for (s, label), runs in points(doc, {"streams", "max-streams", "max-rate", "open-loop"}).items():
        p = runs[0]["point"]
        d = lambda q: spread([r["dispatch_us"][q] if r["dispatch_us"]["n"] else None for r in runs])
        print(f"| {s} | {label} | {p['qps']:.2f} | {spread([r['client']['achieved_qps'] for r in runs], '{:.2f}')} "
              f"| {d('p50')} | {d('p99')} | {spread([r['client']['peak_in_flight'] for r in runs])} "
              f"| {spread([r['cpu_ms_per_1000_tokens'] for r in runs], '{:.1f}')} "
              f"| {spread([(r['client']['lag_p99_s'] or 0) * 1e6 for r in runs])} "
              f"| {sum(1 for r in runs if r['client']['saturated'])}/{len(runs)} "
              f"| {spread([(r['sim_timer_lag'] or {}).get('p99_us') for r in runs])} |")


def memory(doc):
    print("| scenario | point | runs | RSS before the row (KiB) | RSS, all in flight (KiB) | peak RSS, VmHWM (KiB) "
          "| KiB per in-flight request | bytes per recorded request | client CPU (s) |")
    print("|" + "---|" * 9)
    for (s, label), runs in points(doc, {"memory-in-flight", "memory-records"}).items():
        c = lambda k: spread([r["client"][k] for r in runs])
        print(f"| {s} | {label} | {len(runs)} | {c('rss_before_kib')} | {c('rss_full_kib')} | {c('hwm_kib')} "
              f"| {spread([r['kib_per_in_flight'] for r in runs], '{:.1f}')} "
              f"| {spread([r['bytes_per_record'] for r in runs])} "
              f"| {spread([r['client']['cpu_s'] for r in runs], '{:.2f}')} |")


def https(doc):
    print("| transport | point | runs | ok / sent | TTFT p50 | TTFT p99 | ITL p50 | ITL p99 | abs ITL p99 | e2e p99 "
          "| client CPU ms / 1k tokens | client CPU (s) | peak in flight | flagged saturated |")
    print("|" + "---|" * 14)
    for (s, label), runs in points(doc, {"http", "https"}).items():
        ok = spread([r["client"]["finished"] - r["client"]["failed"] for r in runs])
        sent = runs[0]["point"]["num_requests"]
        print(f"| {s} | {label} | {len(runs)} | {ok} / {sent} | {err(runs,'ttft','p50')} | {err(runs,'ttft','p99')} "
              f"| {err(runs,'itl','p50')} | {err(runs,'itl','p99')} | {err(runs,'itl_abs','p99')} "
              f"| {err(runs,'e2e','p99')} | {spread([r['cpu_ms_per_1000_tokens'] for r in runs], '{:.1f}')} "
              f"| {spread([r['client']['cpu_s'] for r in runs], '{:.2f}')} "
              f"| {spread([r['client']['peak_in_flight'] for r in runs])} "
              f"| {sum(1 for r in runs if r['client']['saturated'])}/{len(runs)} |")


def scale(doc):
    print("| streams | processes (workers + simulators) | ok / sent | peak in flight | TTFT p50 | TTFT p99 | TTFT max "
          "| send p99 | receive p99 | abs ITL p99 | e2e p99 | dispatch p99 | workers flagged saturated "
          "| worker CPU, max (% of a core) | worker peak RSS, max (MiB) | coordinator CPU (% of a core), peak RSS (MiB) "
          "| simulator CPU, max (% of a core) | wall (s) |")
    print("|" + "---|" * 18)
    for r in doc.get("scale", []):
        p, e = r["point"], r["errors"]
        of = lambda role: [u for u in r["processes"] if u["role"] == role]
        pct = lambda us: max((u["cpu_s"] for u in us), default=0) / r["wall_s"] * 100
        mib = lambda us: max((u["hwm_kib"] for u in us), default=0) / 1024
        coord = of("coordinator")
        https = " (https)" if p.get("tls") else ""
        print(f"| {p['streams']:,}{https} | {p['workers']} + {p['simulators']} | {r['requests'] - r['failed']:,} / {r['requests']:,} "
              f"| {r['peak_in_flight']:,} | {e['ttft']['p50']:.0f} | {e['ttft']['p99']:,.0f} | {e['ttft']['max']:,.0f} "
              f"| {e['send_side']['p99']:,.0f} | {e['receive_side']['p99']:,.0f} | {e['itl_abs']['p99']:,.0f} "
              f"| {e['e2e']['p99']:,.0f} | {r['dispatch_us']['p99']:,.0f} | {len(r['saturated_workers'])} of {p['workers']} "
              f"| {pct(of('worker')):.0f} | {mib(of('worker')):.0f} | {pct(coord):.0f}, {mib(coord):.0f} "
              f"| {pct(of('simulator')):.0f} | {r['wall_s']:.0f} |")


doc = json.load(open(sys.argv[1]))
for section in sys.argv[2:] or ["errors", "schedule", "memory", "https"]:
    {"errors": errors, "schedule": schedule, "memory": memory, "https": https, "scale": scale}[section](doc)
    print()
