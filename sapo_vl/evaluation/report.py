"""What a person reads: the printed summary of one task, and the models × tasks table (Markdown, CSV) and
bar chart (PNG) of a suite run.

The table's cells are pass@1 in percent (the mean score over all samples; with one greedy sample it is the
accuracy); the CSV adds the 95% bootstrap interval, accuracy, format compliance and response length; the
chart draws pass@1 per task, one bar per model, with the interval as an error bar.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def summary_text(s: dict) -> str:
    """The printed table of one task's summary."""
    m, g, d = s["metrics"], s["generation"], s["dataset"]
    mode = "greedy" if g["greedy"] else f"T={g['temperature']:g} top_p={g['top_p']:g} top_k={g['top_k']}"
    lines = [f"{s['task']}  |  model {s['model']}  |  {m['n_records']} records x {g['n_samples']} sample(s)  |  "
             f"seed {s['seed']}, {mode}, max {g['max_new_tokens']} new tokens"]
    rows = [("accuracy (sample 0)", f"{_pct(m['accuracy'])}%", _ci(m.get("accuracy_ci95"))),
            ("pass@1 (mean of K)", f"{_pct(m['pass@1'])}%", _ci(m.get("pass@1_ci95")))]
    rows += [(f"pass@{k}", f"{_pct(v)}%", "") for k, v in m.get("pass@k", {}).items() if k != "1"]
    rows += [("format compliance", _pct(m.get("format_compliance")) + ("%" if m.get("format_compliance") is not None
                                                                       else ""), ""),
             ("mean response", f"{m.get('mean_response_tokens', 0):.1f} tokens",
              f"truncated {_pct(m.get('truncation_rate'))}%")]
    if len(m.get("by_verifier", {})) > 1:
        rows += [(f"  {name}", f"{_pct(v['pass@1'])}%", f"{v['records']} records")
                 for name, v in m["by_verifier"].items()]
    t = s.get("timing") or {}
    if t.get("samples_per_s"):
        rows.append(("throughput", f"{t['samples_per_s']:.2f} samples/s", f"{t['world_size']} rank(s), {t['device']}"))
    lines += [f"  {a:<22}{b:>12}   {c}".rstrip() for a, b, c in rows]
    skipped = sum(d["skipped"].values())
    lines.append(f"  dataset: {d['name']} split {d['split']} ({d['revision']}, {d['fingerprint']})"
                 + (f", {skipped} row(s) skipped: {d['skipped']}" if skipped else ""))
    lines.append(f"  rows: {coverage_line(s.get('coverage') or {})}")
    lines.append(f"  scoring: {s['scoring']}")
    if (s.get("coverage") or {}).get("warning"):
        lines.append(f"  WARNING: {s['coverage']['warning']}")
    return "\n".join(lines)


def coverage_line(c: dict) -> str:
    """"2701 scored of 3040 published (339 not scored)", "447 scored of 448 published (1 data error in the
    release)", "20 scored (--limit 20; 3040 published)"."""
    if not c:
        return "n/a"
    text = f"{c['scored']} scored"
    if c.get("limit") is not None:
        return text + f" (--limit {c['limit']}" + (f"; {c['published']} published)" if c.get("published") else ")")
    if c.get("published") is None:
        return text + " (no published size)"
    notes = [f"{c['unscored']} not scored"] if c.get("unscored") else []
    notes += [f"{c['data_errors']} data error(s) in the release"] if c.get("data_errors") else []
    return text + f" of {c['published']} published" + (f" ({', '.join(notes)})" if notes else "")


def _ci(ci) -> str:
    return "" if not ci else f"95% CI [{_pct(ci[0])}, {_pct(ci[1])}]"


def suite_rows(results: dict[str, dict[str, dict]]) -> list[dict]:
    """One row per (model, task): results[model][task] is that run's summary."""
    rows = []
    for model, by_task in results.items():
        for task, s in by_task.items():
            m = s["metrics"]
            lo, hi = m.get("pass@1_ci95") or (None, None)
            rows.append({"model": model, "task": task, "domain": s["domain"], "records": m["n_records"],
                         "samples": m["n_samples"], "pass@1": m["pass@1"], "ci95_low": lo, "ci95_high": hi,
                         "accuracy": m["accuracy"], "format_compliance": m.get("format_compliance"),
                         "mean_response_tokens": m.get("mean_response_tokens"), "scoring": s["scoring_kind"]})
    return rows


def suite_markdown(results: dict[str, dict[str, dict]]) -> str:
    """Models × tasks, pass@1 in percent, with an unweighted mean over the tasks."""
    tasks = sorted({t for by_task in results.values() for t in by_task})
    head = "| model | " + " | ".join(tasks) + " | mean |"
    lines = [head, "|" + "---|" * (len(tasks) + 2)]
    for model, by_task in results.items():
        vals = [by_task[t]["metrics"]["pass@1"] if t in by_task else None for t in tasks]
        known = [v for v in vals if v is not None]
        mean = sum(known) / len(known) if known else None
        lines.append(f"| {model} | " + " | ".join(_pct(v) for v in vals) + f" | {_pct(mean)} |")
    return "\n".join(lines) + "\n"


def suite_csv(results: dict[str, dict[str, dict]]) -> str:
    rows = suite_rows(results)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["model", "task"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def suite_chart(results: dict[str, dict[str, dict]], path: str | Path, title: str = "") -> Path:
    """Grouped bars: pass@1 (%) per task, one bar per model, 95% bootstrap interval as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = sorted({t for by_task in results.values() for t in by_task})
    models = list(results)
    width = 0.8 / max(1, len(models))
    x = np.arange(len(tasks))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(tasks) * max(1, len(models)) ** 0.5 + 2), 4.5))
    for i, model in enumerate(models):
        vals, err = [], [[], []]
        for t in tasks:
            m = results[model].get(t, {}).get("metrics", {})
            v = m.get("pass@1") or 0.0
            lo, hi = m.get("pass@1_ci95") or (v, v)
            vals.append(100 * v)
            err[0].append(max(0.0, 100 * (v - lo)))
            err[1].append(max(0.0, 100 * (hi - v)))
        ax.bar(x + (i - (len(models) - 1) / 2) * width, vals, width, yerr=err, capsize=2, label=model)
    ax.set_xticks(x, tasks, rotation=30, ha="right")
    ax.set_ylabel("pass@1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title or "sapo-vl eval")
    ax.legend(fontsize="small")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
