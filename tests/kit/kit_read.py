"""Reads a coebench run the way the SambaNova starter kit's own consumers read theirs.

Usage: kit_read.py CONTRACT_JSON RUN_DIR WORKBOOK

CONTRACT_JSON holds the kit's record keys and consolidated columns (from
runner/test-support/src/kit_contract.rs). The code paths below are the kit's, redone with the
pandas calls its notebooks and consolidator make (pandas 1.5.3, as the kit pins):

- notebooks/analyze-results.ipynb, per row: pd.read_json of the individual responses, the
  successes, the client-vs-server percentiles per batch size, the per-batch table, and the
  summary as pd.DataFrame(summary, index=[0]) with the kit's column renaming;
- benchmarking_bundles: read_perf_eval_json_files over the run folder (every file whose name
  holds "summary" or "individual_responses"), the consolidator's uuid, batching,
  switching-time and representative-batch steps and its export (whose column choice must be
  the kit block of coebench's workbook), and the bundle notebook's pd.read_excel of the
  workbook;
- the records' keys in the kit's order with the kit's types, and the response texts.

Prints a JSON report on success; exits 1 naming the first problem otherwise.
"""

import json
import math
import os
import re
import sys
import tempfile
from collections import Counter

import numpy as np
import pandas as pd

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIME_RE = re.compile(r"^\d{2}:\d{2}:\d{2}\.\d{6}$")


class Problem(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Problem(message)


def kit_rename(column):
    return column.replace("results_", "").replace("_quantiles", "").replace("_per_request", "")


def read_folder(folder, kind):
    """The kit's read_perf_eval_json_files: every file whose name contains `kind`."""
    data = []
    for filename in os.listdir(folder):
        if kind not in filename:
            continue
        with open(os.path.join(folder, filename)) as f:
            loaded = json.load(f)
        if kind == "individual_responses":
            data.extend({"filename": filename, **record} for record in loaded)
        else:
            data.append(loaded)
    return pd.DataFrame(data).rename(columns=kit_rename).copy()


def analyze_results(individual_path):
    """notebooks/analyze-results.ipynb over one row."""
    df_user = pd.read_json(individual_path)
    df_user = df_user[df_user["error_code"].isnull()]
    batching_exposed = not df_user["batch_size_used"].isnull().all()
    if not df_user.empty:
        for pair in (
            ["server_output_token_per_s_per_request", "client_output_token_per_s_per_request"],
            ["server_ttft_s", "client_ttft_s"],
            ["server_end_to_end_latency_s", "client_end_to_end_latency_s"],
        ):
            melted = df_user.melt(
                id_vars=["batch_size_used"], value_vars=pair, var_name="Metric", value_name="Value"
            )
            groups = [str(x) for x in sorted(pd.unique(melted["batch_size_used"]))]
            melted["batch_size_used"] = [str(x) for x in melted["batch_size_used"]]
            for group in groups:
                for metric in pair:
                    mask = (melted["Metric"] == metric) & (melted["batch_size_used"] == group)
                    np.percentile(melted["Value"][mask].astype(float), [5, 50, 95])
        per_batch = df_user.groupby("batch_size_used", dropna=False)
        table = pd.merge(
            per_batch["server_output_token_per_s_per_request"].mean().reset_index(),
            per_batch["server_number_output_tokens"].sum().reset_index(),
            on="batch_size_used",
        )
        if batching_exposed:
            table["total"] = table["server_output_token_per_s_per_request"] * table["batch_size_used"]
        # The gantt chart's bars start at each request's start time.
        [str(x) for x in df_user["start_time"]]
        (1000 * df_user["client_ttft_s"]).tolist()
    summary_path = individual_path.replace("individual_responses.json", "summary.json")
    with open(summary_path) as f:
        summary = json.load(f)
    df_summary = pd.DataFrame(summary, index=[0])
    df_summary = df_summary.rename(columns=kit_rename).copy()
    check(len(df_summary) == 1, f"{summary_path}: not one row")
    df_summary.T
    return summary


def check_summary_types(path, summary):
    for key, value in summary.items():
        check(not isinstance(value, (list, dict)), f"{path}: {key} is not a scalar")
    check(isinstance(summary["results_error_code_frequency"], str), f"{path}: error_code_frequency")
    check(isinstance(summary["num_input_tokens"], int), f"{path}: num_input_tokens")
    for metric in (
        "number_input_tokens",
        "number_output_tokens",
        "server_number_input_tokens",
        "server_number_output_tokens",
    ):
        for stat in ("min", "max"):
            key = f"results_{metric}_{stat}"
            if key in summary:
                check(
                    isinstance(summary[key], str) and summary[key].isdigit(),
                    f"{path}: {key} is {summary[key]!r}, the kit writes integer extremes as text",
                )
        p50 = f"results_{metric}_quantiles_p50"
        if p50 in summary:
            check(isinstance(summary[p50], float), f"{path}: {p50} is not a float")


def check_records(path, kit_keys):
    with open(path) as f:
        records = json.load(f)
    for record in records:
        keys = list(record)
        check(keys[: len(kit_keys)] == kit_keys, f"{path}: record keys {keys[:len(kit_keys)]}")
        check(record["error_code"] is None or isinstance(record["error_code"], str), f"{path}: error_code")
        check(isinstance(record["error_msg"], str), f"{path}: error_msg")
        check(isinstance(record["prompt_name"], str), f"{path}: prompt_name")
        for key in ("start_time", "end_time"):
            check(TIME_RE.match(record[key] or ""), f"{path}: {key} {record[key]!r}")
        for key in kit_keys:
            value = record[key]
            if key in ("error_code", "error_msg", "prompt_name", "start_time", "end_time"):
                continue
            if key == "client_inter_token_latencies_s":
                check(value is None or isinstance(value, list), f"{path}: {key}")
            else:
                check(
                    value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)),
                    f"{path}: {key} is {value!r}",
                )
        if record["error_code"] is None:
            for key in ("number_input_tokens", "number_output_tokens", "server_number_input_tokens"):
                check(isinstance(record[key], int), f"{path}: {key} of a success is {record[key]!r}")
    return records


def consolidate(run_dir):
    """The bundle consolidator's reading steps (HEAD): summaries with their uuid, the batching of
    each row's records, the switching time per uuid, merged into the summaries."""
    df_summary = read_folder(run_dir, "summary")
    df_individual = read_folder(run_dir, "individual_responses")
    df_summary["uuid"] = df_summary["name"].apply(lambda n: UUID_RE.search(n).group(0))
    frames = []
    for filename in os.listdir(run_dir):
        if "individual_responses" not in filename:
            continue
        parts = filename.split("_")
        shift = 2 if "multimodal" in filename else 0
        int(parts[3 + shift]), int(parts[4 + shift])
        df = df_individual[df_individual["filename"] == filename].copy()
        if df.empty:
            continue
        df = df.sort_values("end_time").reset_index(drop=True)
        df["group"] = (df["server_ttft_s"] != df["server_ttft_s"].shift()).cumsum()
        counts = df.groupby(["group", "server_ttft_s"]).size().reset_index(name="n")
        to_batch = {g: 1 << (int(n) - 1).bit_length() for g, n in counts.set_index("group")["n"].items()}
        df["requests_batching_per_request"] = df["group"].map(to_batch)
        frames.append(df.drop(columns=["group"]))
    check(frames, "no individual responses with records")
    df_all = pd.concat(frames)
    df_all["uuid"] = df_all["filename"].apply(lambda n: UUID_RE.search(n).group(0))
    switching = []
    for uuid, group in df_all.groupby("uuid"):
        group = group.sort_values("start_time")
        biggest = group[group["requests_batching_per_request"] == group["requests_batching_per_request"].max()]
        switching.append({"uuid": uuid, "switching_time": biggest["server_ttft_s"].max() - biggest["server_ttft_s"].min()})
    merged = df_summary.merge(pd.DataFrame(switching).set_index("uuid"), on="uuid", how="left")
    merged["request_batching_frequencies"] = merged["uuid"].map(
        lambda u: dict(Counter(df_all[df_all["uuid"] == u]["requests_batching_per_request"]))
    )
    def representative(u):
        values = df_all[df_all["uuid"] == u]["requests_batching_per_request"].tolist()
        total = sum(values)
        for value, count in Counter(values).items():
            if total and value * count / total > 0.5:
                return value
        return None

    merged["representative_batch_size"] = merged["uuid"].map(representative)
    merged.sort_values("timestamp", inplace=True)
    for column in merged.columns:
        check(not column.endswith(("_x", "_y")), f"the consolidator's merge collides on {column}")
    return merged


def kit_export(merged, kit_columns, out_path):
    """The consolidator's export: its columns, less those no summary has, to_excel."""
    missing = [c for c in ("num_concurrent_requests", "qps", "qps_distribution") if c not in merged.columns]
    merged["multimodal_img_size"] = merged["name"].str.extract(r"multimodal_(small|medium|large)", expand=False)
    if merged["multimodal_img_size"].isnull().all():
        missing.append("multimodal_img_size")
    selected = [c for c in kit_columns if c not in missing and c in merged.columns]
    merged[selected].to_excel(out_path)
    return selected


def read_workbook(path, kit_columns, always):
    """The bundle notebook's dashboard: pd.read_excel, then the columns it plots."""
    df = pd.read_excel(path)
    columns = list(df.columns)
    check(columns[0] == "Unnamed: 0", f"{path}: first column {columns[0]!r} is not the unnamed index")
    check(list(df["Unnamed: 0"]) == list(range(len(df))), f"{path}: index {list(df['Unnamed: 0'])}")
    kit_block = [c for c in columns[1:] if c in kit_columns]
    check(kit_block == [c for c in kit_columns if c in kit_block], f"{path}: kit columns out of order {kit_block}")
    check(columns[1 : 1 + len(kit_block)] == kit_block, f"{path}: coebench columns inside the kit's block")
    missing = [c for c in always if c not in kit_block]
    check(not missing, f"{path}: missing {missing}")
    if "num_concurrent_requests" in df.columns:
        df = df.sort_values(by=["model", "num_input_tokens", "num_concurrent_requests"])
        df["x_label"] = (
            "tokens=" + df["num_input_tokens"].astype(str) + " | conc=" + df["num_concurrent_requests"].astype(str)
        )
    for model in df["model"].unique():
        rows = df[df["model"] == model]
        rows["switching_time"].tolist(), rows["server_ttft_s_p50"].tolist(), rows["server_output_token_per_s_p50"].tolist()
    return columns, df


def check_response_texts(path, records):
    with open(path) as f:
        lines = [json.loads(line) for line in f]
    check(len(lines) == len(records), f"{path}: {len(lines)} lines for {len(records)} records")
    for line in lines:
        check(set(line) >= {"prompt", "completion"}, f"{path}: keys {sorted(line)}")
        check(isinstance(line["prompt"]["template"], str) and line["prompt"]["name"], f"{path}: prompt")
        check(isinstance(line["completion"], str), f"{path}: completion")
    return len(lines)


def main():
    contract_path, run_dir, workbook = sys.argv[1:4]
    with open(contract_path) as f:
        contract = json.load(f)
    report = {"rows": 0, "records": 0, "response_texts": 0}
    for filename in sorted(os.listdir(run_dir)):
        if not filename.endswith("_individual_responses.json"):
            continue
        path = os.path.join(run_dir, filename)
        records = check_records(path, contract["record_keys"])
        summary = analyze_results(path)
        check_summary_types(path.replace("individual_responses.json", "summary.json"), summary)
        texts = path.replace("_individual_responses.json", "_response_texts.jsonl")
        if os.path.exists(texts):
            report["response_texts"] += check_response_texts(texts, records)
        report["rows"] += 1
        report["records"] += len(records)
    merged = consolidate(run_dir)
    report["consolidated_rows"] = len(merged)
    report["switching_time"] = [None if math.isnan(v) else v for v in merged["switching_time"].astype(float)]
    with tempfile.TemporaryDirectory() as tmp:
        kit_selected = kit_export(merged, contract["kit_columns"], os.path.join(tmp, "kit.xlsx"))
    columns, df = read_workbook(workbook, contract["kit_columns"], contract["always_columns"])
    ours = [c for c in columns[1:] if c in contract["kit_columns"]]
    check(
        ours == kit_selected,
        f"the kit's consolidator would write the columns {kit_selected}, coebench wrote {ours}",
    )
    report["workbook_columns"] = columns
    report["workbook_rows"] = len(df)
    print(json.dumps(report))


if __name__ == "__main__":
    try:
        main()
    except Problem as problem:
        print(f"kit_read.py: {problem}", file=sys.stderr)
        sys.exit(1)
