r"""Summary of a sweep made by experiments/sweep.py (docs/sweeps.md).

  python experiments/sweep_report.py /tmp/td3bc_sweep [--metric=eval/normalized_score]

Per hyperparameter point (the overrides other than `seed`): the final value of --metric
(summary.json) as mean +- std over its seeds (std with ddof=0), the number of seeds, and the
best point (highest mean; --lower_is_better flips it). Prints the table and writes
DIR/report.md and DIR/report.json; with matplotlib, DIR/report_<key>.png (final metric vs each
swept hyperparameter, one line per combination of the others) and DIR/report_curves.png (the
metric over training steps, one line per point, from metrics.jsonl).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np
from absl import app, flags

_METRIC = flags.DEFINE_string("metric", "eval/normalized_score",
                              "Metric of summary.json / metrics.jsonl to report.")
_LOWER = flags.DEFINE_bool("lower_is_better", False, "The best point has the lowest mean.")
SEED_KEY = "seed"


def _fmt(v: Any) -> str:
  if isinstance(v, float):
    return f"{v:g}"
  if isinstance(v, list):
    return "x".join(map(str, v))
  return str(v)


def load_sweep(workdir: str, metric: str) -> dict:
  """sweep.json with each point's final metric ('final', None if unfinished) and its curve."""
  path = os.path.join(workdir, "sweep.json")
  if not os.path.exists(path):
    raise ValueError(f"{path}: missing; expected a directory written by experiments/sweep.py")
  with open(path) as f:
    manifest = json.load(f)
  for p in manifest["points"]:
    pdir = os.path.join(workdir, "points", p["name"])
    p["final"], p["curve"] = None, []
    summary = os.path.join(pdir, "summary.json")
    if os.path.exists(summary):
      with open(summary) as f:
        value = json.load(f).get(metric)
      p["final"] = float(value) if value is not None else None
    metrics = os.path.join(pdir, "metrics.jsonl")
    if os.path.exists(metrics):
      with open(metrics) as f:
        rows = [json.loads(line) for line in f if line.strip()]
      p["curve"] = [(r["step"], r[metric]) for r in rows if metric in r]
  return manifest


def summarize(manifest: dict, lower_is_better: bool = False) -> dict:
  """Rows per hyperparameter point (overrides without seed): mean, std, seeds; and the best."""
  keys = [k for k in manifest["points"][0]["overrides"] if k != SEED_KEY] if manifest[
      "points"] else []
  rows: dict[str, dict] = {}
  for p in manifest["points"]:
    hp = {k: v for k, v in p["overrides"].items() if k != SEED_KEY}
    for k in hp:
      if k not in keys:
        keys.append(k)
    row = rows.setdefault(json.dumps(hp, sort_keys=True),
                          {"hyperparameters": hp, "values": [], "seeds": [], "unfinished": 0})
    if p["final"] is None:
      row["unfinished"] += 1
    else:
      row["values"].append(p["final"])
      row["seeds"].append(p["overrides"].get(SEED_KEY))
  out = []
  for row in rows.values():
    v = np.asarray(row["values"], np.float64)
    out.append(dict(row, mean=float(v.mean()) if v.size else None,
                    std=float(v.std()) if v.size else None, num_seeds=int(v.size)))
  done = [r for r in out if r["mean"] is not None]
  best = (min if lower_is_better else max)(done, key=lambda r: r["mean"]) if done else None
  return {"keys": keys, "rows": out, "best": best}


def markdown(report: dict, metric: str) -> str:
  keys = report["keys"]
  head = keys + [f"{metric} (mean +- std)", "seeds", ""]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in report["rows"]:
    cells = [_fmt(r["hyperparameters"].get(k, "")) for k in keys]
    cells.append("not finished" if r["mean"] is None else f"{r['mean']:.4g} +- {r['std']:.3g}")
    cells.append(str(r["num_seeds"]) + (f" (+{r['unfinished']} unfinished)"
                                        if r["unfinished"] else ""))
    cells.append("**best**" if r is report["best"] else "")
    lines.append("| " + " | ".join(cells) + " |")
  if report["best"] is not None:
    hp = ", ".join(f"{k}={_fmt(v)}" for k, v in report["best"]["hyperparameters"].items())
    lines.append(f"\nBest: {hp or '(no hyperparameter swept)'}: {report['best']['mean']:.4g} "
                 f"+- {report['best']['std']:.3g} over {report['best']['num_seeds']} seed(s)")
  return "\n".join(lines) + "\n"


def plot(manifest: dict, report: dict, metric: str, workdir: str) -> list[str]:
  """PNG files written; raises ImportError without matplotlib."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  written = []
  done = [r for r in report["rows"] if r["mean"] is not None]
  for key in report["keys"]:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    others = [k for k in report["keys"] if k != key]
    lines: dict[str, list] = {}
    for r in done:
      label = ", ".join(f"{k}={_fmt(r['hyperparameters'].get(k))}" for k in others)
      lines.setdefault(label, []).append(r)
    values = sorted({_fmt(r["hyperparameters"].get(key)) for r in done})
    numeric = all(isinstance(r["hyperparameters"].get(key), (int, float)) for r in done)
    for label, rs in lines.items():
      rs = sorted(rs, key=lambda r: (r["hyperparameters"].get(key) if numeric
                                     else _fmt(r["hyperparameters"].get(key))))
      x = ([r["hyperparameters"][key] for r in rs] if numeric
           else [values.index(_fmt(r["hyperparameters"].get(key))) for r in rs])
      ax.errorbar(x, [r["mean"] for r in rs], yerr=[r["std"] for r in rs], marker="o",
                  capsize=3, label=label or None)
    if not numeric:
      ax.set_xticks(range(len(values)), values)
    ax.set_xlabel(key)
    ax.set_ylabel(f"final {metric}")
    if others:
      ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(workdir, f"report_{key.replace('/', '_')}.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
  fig, ax = plt.subplots(figsize=(6, 4))
  for p in manifest["points"]:
    if p["curve"]:
      steps, vals = zip(*p["curve"])
      ax.plot(steps, vals, label=p["name"], lw=1)
  ax.set_xlabel("step")
  ax.set_ylabel(metric)
  ax.legend(fontsize=6, ncol=2)
  fig.tight_layout()
  path = os.path.join(workdir, "report_curves.png")
  fig.savefig(path, dpi=100)
  plt.close(fig)
  written.append(path)
  return written


def report(workdir: str, metric: str = "eval/normalized_score",
           lower_is_better: bool = False) -> dict:
  manifest = load_sweep(workdir, metric)
  if not any(p["final"] is not None for p in manifest["points"]):
    raise ValueError(f"{workdir}: no finished point has {metric!r} in its summary.json "
                     "(another --metric? training still running?)")
  rep = summarize(manifest, lower_is_better)
  text = markdown(rep, metric)
  from jaxaug.utils import atomic_write_text  # pylint: disable=g-import-not-at-top
  atomic_write_text(os.path.join(workdir, "report.md"), text)
  atomic_write_text(os.path.join(workdir, "report.json"),
                    json.dumps(dict(rep, metric=metric), indent=2))
  try:
    rep["plots"] = plot(manifest, rep, metric, workdir)
  except ImportError:
    rep["plots"] = []
    print("matplotlib is not installed: no plots written (pip install matplotlib)",
          file=sys.stderr)
  rep["text"] = text
  return rep


def main(argv):
  if len(argv) != 2:
    raise app.UsageError("usage: sweep_report.py SWEEP_DIR [--metric=...]")
  try:
    rep = report(argv[1], _METRIC.value, _LOWER.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  print(rep["text"])
  for path in rep["plots"]:
    print("wrote", path)


if __name__ == "__main__":
  app.run(main)
