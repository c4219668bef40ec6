"""The benchmark's report: medians over runs, verdicts against the targets, the table,
and the JSON file (var/bench/ by default) that docs/benchmark.md quotes.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

import orjson

from bench.loadgen import MIB
from daemon.config import ROOT

OUT_DIR = ROOT / "var" / "bench"
# How the table calls a child's RSS over its jobs: within the target, or growing.
FLAT = {True: "flat", False: "NOT FLAT"}
# The issues' targets on a 2-core machine; the api's bound is 1.5 x every upload at once.
# Issue 18: the corpus at 1.5x the ceiling (1.0x like for like, --no-fast-doc), our own
# CPU per tiny job (the service's minus textract's and the HTTP floor's) at most 0.8 ms,
# an unloaded p50 of 2 ms; the tiny ratio's target (0.5x) is withdrawn, its figure kept.
# Against Celery (issue 18 item 4): the service/Celery ratios within one run. Issue 16:
# `textractd extract` on the corpus within 10 % of the benchmark client's rate.
TARGETS = {"corpus_ratio": 1.5, "batch_ratio": 2.0, "cli_ratio": 0.9, "unloaded_p50_ms": 2.0,
           "overhead_ms_per_job": 0.8, "api_peak_rss_mb": 32 * 16 * 1.5,
           "child_growth_mb": 10.0, "celery_tiny_ratio": 4.0, "celery_corpus_ratio": 1.2}
LIKE_FOR_LIKE_CORPUS_RATIO = 1.0


def summarise(runs: list[dict]) -> dict:
    """Medians over runs of the figures the table shows; ratios are per-run first."""
    def med(*keys: str) -> float | None:
        values = []
        for run in runs:
            value: object = run
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, int | float):
                values.append(value)
        return statistics.median(values) if values else None

    out: dict[str, object] = {}
    for phase, arm, metric in [("corpus", "ceiling", "rate"), ("corpus", "service", "rate"),
                               ("corpus", "service", "p50_ms"), ("corpus", "service", "p95_ms"),
                               ("corpus", "service", "p99_ms"), ("tiny", "ceiling", "rate"),
                               ("tiny", "service", "rate"), ("tiny", "service", "p50_ms"),
                               ("tiny", "service", "p95_ms"), ("tiny", "service", "p99_ms"),
                               ("corpus", "ceiling", "cpu_ms_per_doc"),
                               ("corpus", "service", "cpu_ms_per_doc"),
                               ("tiny", "ceiling", "cpu_ms_per_doc"),
                               ("tiny", "service", "cpu_ms_per_doc"),
                               ("tiny", "floor", "rate"), ("tiny", "floor", "cpu_ms_per_doc"),
                               ("tiny", "floor", "best_cpu_ratio"),
                               ("tiny", "shape_floor", "rate"),
                               ("tiny", "shape_floor", "cpu_ms_per_doc"),
                               ("tiny", "shape_floor", "hop_ms_per_job")]:
        out[f"{phase}_{arm}_{metric}"] = med(phase, arm, metric)
    out["corpus_ratio"] = med("corpus", "ratio")
    out["tiny_ratio"] = med("tiny", "ratio")
    out["corpus_cpu_ratio"] = med("corpus", "cpu_ratio")
    out["tiny_cpu_ratio"] = med("tiny", "cpu_ratio")
    out["overhead_ms_per_job"] = med("tiny", "overhead_ms_per_job")
    for arm in ("single", "batch"):
        out[f"batch_{arm}_rate"] = med("batch", arm, "rate")
        out[f"batch_{arm}_cpu_ms_per_job"] = med("batch", arm, "cpu_ms_per_job")
    out["batch_ratio"] = med("batch", "ratio")
    out["batch_cpu_ratio"] = med("batch", "cpu_ratio")
    for arm in ("client", "cli"):
        out[f"cli_{arm}_rate"] = med("cli", arm, "rate")
        out[f"cli_{arm}_cpu_ms_per_doc"] = med("cli", arm, "cpu_ms_per_doc")
    out["cli_ratio"] = med("cli", "ratio")
    out["unloaded_p50_ms"] = med("latency", "p50_ms")
    out["unloaded_p99_ms"] = med("latency", "p99_ms")
    out["api_peak_rss_mb"] = med("memory", "api", "peak_mb")
    out["child_growth_mb"] = med("memory", "children", "max_growth_mb")
    for work in ("tiny", "corpus"):
        for arm in ("service", "celery"):
            for metric in ("rate", "cpu_ms_per_doc", "p50_ms", "p99_ms"):
                out[f"celery_{work}_{arm}_{metric}"] = med("celery", work, arm, metric)
        out[f"celery_{work}_ratio"] = med("celery", work, "ratio")
        out[f"celery_{work}_cpu_ratio"] = med("celery", work, "cpu_ratio")
    out["celery_tiny_shape_floor_rate"] = med("celery", "tiny", "shape_floor", "rate")
    out["celery_tiny_shape_floor_ratio"] = med("celery", "tiny", "shape_floor_ratio")
    out["scaling"] = _scaling_medians(runs)
    return out


def _scaling_medians(runs: list[dict]) -> list[dict]:
    """Each scaling cell (size, workers) with the medians of its figures over the runs."""
    by_cell: dict[tuple[int, int], list[dict]] = {}
    for run in runs:
        for cell in run.get("scaling", {}).get("cells", []):
            by_cell.setdefault((cell["bytes"], cell["workers"]), []).append(cell)
    return [{key: (statistics.median(c[key] for c in cells)
                   if isinstance(value, int | float) and key not in ("bytes", "workers")
                   else value)
             for key, value in cells[0].items()}
            for _, cells in sorted(by_cell.items())]


def verdicts(summary: dict, targets: dict[str, float]) -> dict[str, bool | None]:
    def check(name: str, ok) -> bool | None:
        return None if summary.get(name) is None else bool(ok(summary[name]))

    return {"corpus_ratio": check("corpus_ratio", lambda v: v >= targets["corpus_ratio"]),
            "overhead_ms_per_job": check("overhead_ms_per_job",
                                         lambda v: v <= targets["overhead_ms_per_job"]),
            "batch_ratio": check("batch_ratio", lambda v: v >= targets["batch_ratio"]),
            "cli_ratio": check("cli_ratio", lambda v: v >= targets["cli_ratio"]),
            "unloaded_p50_ms": check("unloaded_p50_ms",
                                     lambda v: v <= targets["unloaded_p50_ms"]),
            "api_peak_rss_mb": check("api_peak_rss_mb",
                                     lambda v: v < targets["api_peak_rss_mb"]),
            "child_growth_mb": check("child_growth_mb",
                                     lambda v: v <= targets["child_growth_mb"]),
            "celery_tiny_ratio": check("celery_tiny_ratio",
                                       lambda v: v >= targets["celery_tiny_ratio"]),
            "celery_corpus_ratio": check("celery_corpus_ratio",
                                         lambda v: v >= targets["celery_corpus_ratio"])}


def table(report: dict) -> str:
    s, v, runs, meta = report["summary"], report["verdicts"], report["runs"], report["meta"]
    work, targets = meta["workload"], report["targets"]

    def f(value: float | None, fmt: str = "{:.1f}") -> str:
        return "-" if value is None else fmt.format(value)

    def row(label: str, service: str = "", ceiling: str = "", ratio: str = "",
            target: str = "", verdict: str = "") -> str:
        marks = FLAT if verdict == "child_growth_mb" else {True: "ok", False: "MISSED"}
        mark = marks.get(v.get(verdict), "") if verdict else ""
        return f"{label:32}{service:>18}{ceiling:>10}{ratio:>8}  {target} {mark}".rstrip()

    def spread(prefix: str, digits: str = "{:.1f}") -> str:
        return " / ".join(f(s[f"{prefix}_{q}_ms"], digits) for q in ("p50", "p95", "p99"))

    docs = runs[-1].get("corpus", {}).get("docs", "-")
    cli_docs = runs[-1].get("cli", {}).get("docs", "-")
    lines = [f"textractd benchmark  commit {meta['commit']}  {meta['workers']} workers  "
             f"{len(runs)} run(s), medians  load {f(meta['loadavg_start'], '{:.2f}')}"
             + ("  QUICK" if meta["quick"] else "")
             + ("" if meta["fast_doc"] else "  .doc via soffice (like for like)"),
             row("", "service", "ceiling", "ratio", "target"),
             row(f"corpus ({docs} docs) docs/s", f(s["corpus_service_rate"]),
                 f(s["corpus_ceiling_rate"]), f(s["corpus_ratio"], "{:.2f}x"),
                 f">= {targets['corpus_ratio']}x", "corpus_ratio"),
             row("  CPU ms per doc (all processes)", f(s["corpus_service_cpu_ms_per_doc"]),
                 f(s["corpus_ceiling_cpu_ms_per_doc"]), f(s["corpus_cpu_ratio"], "{:.2f}x")),
             row("  latency ms p50 / p95 / p99", spread("corpus_service", "{:.0f}")),
             row(f"tiny ({work['tiny_jobs']} x 1 KB) jobs/s", f(s["tiny_service_rate"]),
                 f(s["tiny_ceiling_rate"]), f(s["tiny_ratio"], "{:.2f}x")),
             row("  CPU ms per job (all processes)", f(s["tiny_service_cpu_ms_per_doc"], "{:.2f}"),
                 f(s["tiny_ceiling_cpu_ms_per_doc"], "{:.2f}"), f(s["tiny_cpu_ratio"], "{:.2f}x")),
             row("  latency ms p50 / p95 / p99", spread("tiny_service")),
             row("  HTTP floor jobs/s, CPU ms per job", f(s["tiny_floor_rate"]),
                 f(s["tiny_floor_cpu_ms_per_doc"], "{:.2f}")),
             row("  best CPU ratio (floor + textract)", "", "",
                 f(s["tiny_floor_best_cpu_ratio"], "{:.2f}x")),
             row("  our CPU ms per job (- both)", f(s["overhead_ms_per_job"], "{:.2f}"), "",
                 "", f"<= {targets['overhead_ms_per_job']:g} ms", "overhead_ms_per_job"),
             row("  shape floor jobs/s, CPU ms/job", f(s["tiny_shape_floor_rate"]),
                 f(s["tiny_shape_floor_cpu_ms_per_doc"], "{:.2f}")),
             row("    its Redis hop (- HTTP floor)",
                 f(s["tiny_shape_floor_hop_ms_per_job"], "{:.2f}"), ""),
             row("tiny, 32 per request jobs/s", f(s["batch_batch_rate"]),
                 f(s["batch_single_rate"]), f(s["batch_ratio"], "{:.2f}x"),
                 f">= {targets['batch_ratio']:g}x", "batch_ratio"),
             row("  (ceiling column: 1 per request)", "", "", ""),
             row("  CPU ms per job (all processes)", f(s["batch_batch_cpu_ms_per_job"], "{:.2f}"),
                 f(s["batch_single_cpu_ms_per_job"], "{:.2f}"),
                 f(s["batch_cpu_ratio"], "{:.2f}x")),
             row(f"textractd extract docs/s ({cli_docs})", f(s["cli_cli_rate"]),
                 f(s["cli_client_rate"]), f(s["cli_ratio"], "{:.2f}x"),
                 f">= {targets['cli_ratio']:g}x", "cli_ratio"),
             row("  (ceiling column: the bench client)", "", "", ""),
             row("unloaded latency ms p50 / p99", f"{f(s['unloaded_p50_ms'], '{:.2f}')} / "
                 f"{f(s['unloaded_p99_ms'], '{:.2f}')}", "", "",
                 f"p50 <= {targets['unloaded_p50_ms']:g} ms", "unloaded_p50_ms"),
             row(f"api peak RSS MB ({work['upload_clients']} x {work['upload_mb']} MB)",
                 f(s["api_peak_rss_mb"]), "", "", f"< {targets['api_peak_rss_mb']:.0f} MB",
                 "api_peak_rss_mb"),
             row(f"child RSS growth MB ({work['child_jobs']} jobs)", f(s["child_growth_mb"]),
                 "", "", f"<= {targets['child_growth_mb']:g} MB", "child_growth_mb")]
    last = runs[-1]
    if "celery" in meta["phases"]:
        lines += _celery_rows(s, v, last["celery"], targets, row, f)
    if "scaling" in meta["phases"]:
        lines += _scaling_rows(s["scaling"], last["scaling"], f)
    if "corpus" in last:
        lines += ["", "per format, last run, one document at a time in each arm, median ms per "
                      "document:", "textract in the ceiling pool; service = the worker's "
                      "extraction (guards and metadata included); e2e = upload to result",
                  f"{'format':8}{'docs':>5}{'textract':>10}{'service':>10}{'speed-up':>10}"
                  f"{'e2e':>9}"]
        for fmt, r in last["corpus"]["per_format"].items():
            speed = r["textract_ms"] / r["service_extract_ms"] if r["service_extract_ms"] else None
            lines.append(f"{fmt:8}{r['docs']:>5}{r['textract_ms']:>10.1f}"
                         f"{r['service_extract_ms']:>10.1f}{f(speed, '{:.1f}x'):>10}"
                         f"{r['service_e2e_ms']:>9.1f}")
        if last["corpus"]["text_mismatches"]:
            lines.append(f"TEXT DIFFERS from textract: {last['corpus']['text_mismatches']}")
    if "memory" in last:
        for child in last["memory"]["children"]["per_child"]:
            flat = (child["growth_mb"] is not None
                    and child["growth_mb"] <= targets["child_growth_mb"])
            lines.append(f"child {child['pid']}: {f(child['rss_before_mb'])} -> "
                         f"{f(child['rss_after_mb'])} MB RSS over {child['jobs']} jobs"
                         + ("  (recycled)" if child["recycled"] else "")
                         + (f"  {FLAT[flat]}" if child["growth_mb"] is not None else ""))
    return "\n".join(lines)


def _celery_rows(s: dict, v: dict, last: dict, targets: dict, row, f) -> list[str]:
    if "skipped" in last:
        return ["", last["skipped"]]
    lines = ["", f"against Celery 5 (prefork, {last['workers']} children, Redis broker and "
                 f"backend), {last['in_flight']} in flight, interleaved",
             row("", "service", "Celery", "ratio", "target")]
    for work, unit, label in (("tiny", "job", f"tiny ({last['tiny']['jobs']} x 1 KB) jobs/s"),
                              ("corpus", "doc", f"corpus ({last['corpus']['docs']} docs) docs/s")):
        key = f"celery_{work}"
        lines += [row(label, f(s[f"{key}_service_rate"]), f(s[f"{key}_celery_rate"]),
                      f(s[f"{key}_ratio"], "{:.2f}x"), f">= {targets[f'{key}_ratio']:g}x",
                      f"{key}_ratio"),
                  row(f"  CPU ms per {unit} (all processes)",
                      f(s[f"{key}_service_cpu_ms_per_doc"], "{:.2f}"),
                      f(s[f"{key}_celery_cpu_ms_per_doc"], "{:.2f}"),
                      f(s[f"{key}_cpu_ratio"], "{:.2f}x")),
                  row("  latency ms p50", f(s[f"{key}_service_p50_ms"]),
                      f(s[f"{key}_celery_p50_ms"])),
                  row("  latency ms p99", f(s[f"{key}_service_p99_ms"]),
                      f(s[f"{key}_celery_p99_ms"]))]
        if work == "tiny" and s["celery_tiny_shape_floor_rate"] is not None:
            lines.append(row("  shape floor jobs/s (vs Celery)",
                             f(s["celery_tiny_shape_floor_rate"]), f(s["celery_tiny_celery_rate"]),
                             f(s["celery_tiny_shape_floor_ratio"], "{:.2f}x")))
    if last["corpus"]["text_mismatches"]:
        lines.append(f"TEXT DIFFERS from Celery's: {last['corpus']['text_mismatches']}")
    return lines


def _scaling_rows(cells: list[dict], last: dict, f) -> list[str]:
    lines = ["", f"scaling: {last['document']}; {last['in_flight']} in flight, alone = one at "
                 "a time",
             f"{'size':>6}{'workers':>8}{'docs/s':>9}{'MB/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
             f"{'alone p50':>10}{'CPU ms/doc':>11}{'failed':>7}"]
    for c in cells:
        lines.append(f"{size_label(c['bytes']):>6}{c['workers']:>8}{f(c['rate']):>9}"
                     f"{f(c['mb_per_s']):>8}{f(c['p50_ms']):>9}{f(c['p99_ms']):>9}"
                     f"{f(c['alone_p50_ms']):>10}{f(c['cpu_ms_per_doc'], '{:.2f}'):>11}"
                     f"{c['failed']:>7g}")
    return lines


def size_label(size: int) -> str:
    return f"{size // MIB} MB" if size >= MIB else f"{size // 1024} KB"


def commit_id() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")



def write(report: dict, out: Path | None = None) -> Path:
    """The report as JSON, to `out` or to OUT_DIR under the run's start time."""
    started = time.gmtime(report["meta"]["started_at"])
    out = out or OUT_DIR / time.strftime("bench-%Y%m%dT%H%M%SZ.json", started)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2
                                 | orjson.OPT_NON_STR_KEYS))
    return out
