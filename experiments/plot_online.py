r"""Learning curves and a table from online runs (train_online workdirs).

  python experiments/plot_online.py --runs=SAC=/tmp/b/sac_s*,SAC+ATraDiff=/tmp/b/atradiff_s* \
      --out=docs/figures/atradiff_hopper.png --steps=5000,10000,15000

Each label's glob is a set of seeds. Plots mean eval return (and min-max over seeds) against env
steps; prints a markdown table of the mean (± std) normalised score at the given steps and the
wall-clock split (ATraDiff pretraining, generation, adaptation) from summary.json.
"""

from __future__ import annotations

import glob
import json
import os

from absl import app, flags
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from jaxaug.train.logging import read_metrics

_RUNS = flags.DEFINE_list("runs", None, "LABEL=GLOB entries (one glob per method)",
                          required=True)
_OUT = flags.DEFINE_string("out", "online.png", "PNG to write")
_STEPS = flags.DEFINE_list("steps", [], "env steps for the table")
_TITLE = flags.DEFINE_string("title", "Hopper-v5", "plot title")


def _curves(workdir: str, key: str) -> dict[int, float]:
  return {int(m["step"]): float(m[key]) for m in read_metrics(workdir) if key in m}


def main(argv):
  del argv
  fig, ax = plt.subplots(figsize=(6, 4))
  rows = []
  for entry in _RUNS.value:
    if "=" not in entry:
      raise ValueError(f"--runs entry {entry!r}: expected LABEL=GLOB")
    label, pattern = entry.split("=", 1)
    # finished runs only (summary.json is written at the end of train_online)
    dirs = sorted(d for d in glob.glob(pattern)
                  if os.path.exists(os.path.join(d, "summary.json")))
    if not dirs:
      raise ValueError(f"--runs {label}: no workdirs match {pattern!r}")
    curves = [_curves(d, "eval/return") for d in dirs]
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    y = np.array([[c[s] for s in steps] for c in curves])
    ax.plot(steps, y.mean(0), label=f"{label} (n={len(dirs)})")
    ax.fill_between(steps, y.min(0), y.max(0), alpha=0.2)
    norm = [_curves(d, "eval/normalized_score") for d in dirs]
    cells = []
    for s in _STEPS.value:
      v = np.array([n[int(s)] for n in norm if int(s) in n])
      cells.append(f"{v.mean():.1f} ± {v.std():.1f}" if len(v) else "-")
    summaries = [json.load(open(os.path.join(d, "summary.json"))) for d in dirs]
    wall = np.mean([s["wall_time_s"] for s in summaries]) if summaries else float("nan")
    ex = [s.get("extras", {}) for s in summaries]
    gen = np.mean([e.get("atradiff/generation_s", 0.0) for e in ex]) if ex else 0.0
    pre = np.mean([e.get("atradiff/pretrain_s", 0.0) for e in ex]) if ex else 0.0
    syn = np.mean([e.get("atradiff/synthetic_size", 0.0) for e in ex]) if ex else 0.0
    rows.append(f"| {label} | {len(dirs)} | " + " | ".join(cells) +
                f" | {wall:.0f} | {pre:.0f} | {gen:.0f} | {syn:.0f} |")
  ax.set_xlabel("environment steps")
  ax.set_ylabel("evaluation return")
  ax.set_title(_TITLE.value)
  ax.legend()
  fig.tight_layout()
  tmp = _OUT.value + ".tmp.png"
  fig.savefig(tmp, dpi=120)
  os.replace(tmp, _OUT.value)
  header = ("| method | seeds | " + " | ".join(f"score @{s}" for s in _STEPS.value) +
            " | wall s | pretrain s | generation s | synthetic rows |")
  print(header)
  print("|" + "---|" * (header.count("|") - 1))
  print("\n".join(rows))


if __name__ == "__main__":
  app.run(main)
