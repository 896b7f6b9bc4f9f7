r"""The benchmarks of BUILD_NOTES under two Python/JAX toolchains, interleaved, with ratios.

  python experiments/bench_toolchains.py --python_a=.venv/bin/python \
      --python_b=.venv312/bin/python --rounds=2 --out=bench_toolchains.json

Each round runs every benchmark once under each interpreter (the order alternates between rounds
so that drift in machine load falls on both), each in its own process writing JSON. The report
takes, per figure, the median over rounds for each toolchain and prints B / A: for times
(ms, us, s) below 1 means B is faster, for rates (per_s) above 1 means B is faster.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

_PY_A = flags.DEFINE_string("python_a", sys.executable, "interpreter A (e.g. jax 0.10.2)")
_PY_B = flags.DEFINE_string("python_b", "", "interpreter B (e.g. jax 0.12 on Python 3.12)")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "rounds (each runs every benchmark under A and B)")
_ONLY = flags.DEFINE_list("only", [], "subset of benchmark names")
_OUT = flags.DEFINE_string("out", "bench_toolchains.json", "JSON output path")

# name -> argv after the script; {out} is replaced by a JSON path. Sizes are the BUILD_NOTES ones
# cut to what two rounds on two toolchains fit in ~20 minutes on a 2-core CPU.
BENCHES = {
    "loops": ["experiments/bench_loops.py", "--out={out}", "--repeats=3"],
    "offline": ["experiments/bench_offline.py", "--agents=td3bc,iql,cql,mcq", "--seeds=1",
                "--repeats=3", "--out={out}"],
    "offline8": ["experiments/bench_offline.py", "--agents=td3bc,iql", "--seeds=8",
                 "--repeats=3", "--out={out}"],
    "offline_small": ["experiments/bench_offline.py", "--agents=td3bc,iql", "--seeds=1,8",
                      "--repeats=3", "--updates_per_dispatch=50", "--out={out}"],
    "dtql": ["experiments/bench_dtql.py", "--repeats=3", "--act_repeats=20",
             "--diffusion_steps=5", "--out={out}"],
    "diffusion_tiny": ["experiments/bench_diffusion.py", "--sizes=tiny", "--repeats=3",
                       "--out={out}"],
    "redq": ["experiments/bench_redq.py", "--hidden=256", "--repeats=5", "--out={out}"],
    "online": ["experiments/bench_online.py", "--capacity=100000", "--steps=200"],
}

_TIME = re.compile(r"(^|_)(ms|us|s)(_|$)|seconds|time")
_RATE = re.compile(r"per_s")
_SKIP = re.compile(r"peak|load|flops|share|machine|gflops|params|count|evals|batch|capacity")


def _label(row: dict) -> str:
  parts = [f"{k}={v}" for k, v in row.items()
           if isinstance(v, (str, bool)) or (isinstance(v, int) and not isinstance(v, bool))
           or (isinstance(v, list) and all(isinstance(x, int) for x in v))]
  return ",".join(parts)


def flatten(obj, prefix="") -> dict:
  """Numeric timing leaves of a benchmark JSON, keyed by a readable path."""
  out = {}
  if isinstance(obj, dict):
    for k, v in obj.items():
      if k in ("machine",):
        continue
      out.update(flatten(v, f"{prefix}{k}/"))
  elif isinstance(obj, list):
    for i, v in enumerate(obj):
      lab = _label(v) if isinstance(v, dict) else str(i)
      out.update(flatten(v, f"{prefix}[{lab or i}]/"))
  elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
    key = prefix.rstrip("/")
    leaf = key.rsplit("/", 1)[-1]
    if not _SKIP.search(leaf) and (_TIME.search(leaf) or _RATE.search(leaf)):
      out[key] = float(obj)
  return out


def run_one(python: str, name: str, tmp: str, tag: str) -> dict:
  out = os.path.join(tmp, f"{name}_{tag}.json")
  argv = [python] + [a.format(out=out) for a in BENCHES[name]]
  env = dict(os.environ, PYTHONPATH=os.getcwd())
  t = time.perf_counter()
  proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800)
  wall = time.perf_counter() - t
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
  if os.path.exists(out):
    with open(out) as f:
      payload = json.load(f)
  else:  # benchmarks that print one JSON line instead of writing a file
    line = [l for l in proc.stdout.splitlines() if l.startswith("{")][-1]
    payload = json.loads(line)
  print(f"  {tag:>3s} {name:15s} {wall:6.1f} s", flush=True)
  return flatten(payload)


def version(python: str) -> str:
  return subprocess.run([python, "-c", "import sys, jax, jaxlib; print(sys.version.split()[0], "
                         "jax.__version__, jaxlib.__version__)"],
                        capture_output=True, text=True, check=True).stdout.strip()


def main(argv):
  del argv
  if not _PY_B.value:
    raise app.UsageError("--python_b is required (the second toolchain's interpreter)")
  names = _ONLY.value or list(BENCHES)
  unknown = set(names) - set(BENCHES)
  if unknown:
    raise app.UsageError(f"--only: unknown benchmarks {sorted(unknown)}; known: {list(BENCHES)}")
  pys = {"A": _PY_A.value, "B": _PY_B.value}
  vers = {t: version(p) for t, p in pys.items()}
  for t in pys:
    print(f"{t}: {pys[t]} (python, jax, jaxlib = {vers[t]})")
  print(f"load average at start: {os.getloadavg()}")
  figures = {t: {} for t in pys}
  with tempfile.TemporaryDirectory() as tmp:
    for r in range(_ROUNDS.value):
      order = ["A", "B"] if r % 2 == 0 else ["B", "A"]
      print(f"round {r + 1}/{_ROUNDS.value}", flush=True)
      for name in names:
        for t in order:
          for k, v in run_one(pys[t], name, tmp, f"{t}{r}").items():
            figures[t].setdefault(f"{name}:{k}", []).append(v)
  table = []
  for key in sorted(set(figures["A"]) & set(figures["B"])):
    a, b = float(np.median(figures["A"][key])), float(np.median(figures["B"][key]))
    kind = "rate" if _RATE.search(key.rsplit("/", 1)[-1]) else "time"
    speedup = (b / a if kind == "rate" else a / b) if a and b else float("nan")
    table.append({"figure": key, "kind": kind, "A": a, "B": b, "B_speedup": speedup,
                  "A_all": figures["A"][key], "B_all": figures["B"][key]})
    print(f"{key:90s} {a:12.4g} {b:12.4g}  B speed-up {speedup:5.2f}x")
  sp = [row["B_speedup"] for row in table if np.isfinite(row["B_speedup"])]
  if sp:
    print(f"geometric mean B speed-up over {len(sp)} figures: "
          f"{float(np.exp(np.mean(np.log(sp)))):.3f}x")
  sys.path.insert(0, os.getcwd())
  from jaxaug import bench  # pylint: disable=g-import-not-at-top
  bench.write_json(_OUT.value, {"toolchains": {t: {"python": pys[t], "versions": vers[t]}
                                               for t in pys},
                                "rounds": _ROUNDS.value, "load_average_end": os.getloadavg(),
                                "table": table})
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
