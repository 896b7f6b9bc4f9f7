"""Golden metrics of the online loop (jaxaug.train.online.train_online) over 2000 env steps.

Runs SAC, REDQ, RLPD and SAC+ATraDiff (tiny presets, settings in GOLDEN_RUNS below) and writes,
per run, every metrics.jsonl record, summary.json and a sha256 of the final agent state
(`load_agent_state`: parameters, optimiser states, counters). tests/test_online_golden.py runs
the current tree with the same GOLDEN_RUNS and compares against tests/golden/online_2000.json, so
a rewrite of the loop that keeps the references' order of operations can show that it gives the
same run on the same seed.

Whichever jaxaug is importable is the one recorded; to record a frozen tree:

  mkdir -p /tmp/old_tree && git archive 16ba351 | tar -x -C /tmp/old_tree
  cd /tmp && PYTHONPATH=/tmp/old_tree /work/main/.venv/bin/python \
      /work/main/experiments/record_online_golden.py --out=/work/main/tests/golden/online_2000.json

The output file holds one entry per toolchain (python/jax/jaxlib/numpy/mujoco versions and the
CPU): runs of an entry with the same toolchain are replaced, other entries kept, so the same
file can carry goldens for each supported Python/jax pair.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
import time

# Every run of the golden: (config preset, overrides). ONE place: the test imports it.
# 2000 env steps with 200 random start steps, evaluations at 1000 and 2000 (2 episodes), a log
# line every 100 steps. SAC/REDQ/RLPD keep the tiny replay capacity of 1000 rows, so the ring
# wraps at step 1000 and the golden covers overwriting too. SAC+ATraDiff gets a real buffer that
# holds the whole run (its realised synthetic/real ratio is measured against min(step, capacity)
# real rows) and room for ~2x as many synthetic rows as its target ratio asks for.
NUM_ENV_STEPS = 2000
COMMON = {"num_env_steps": NUM_ENV_STEPS, "start_steps": 200, "eval_every": 1000,
          "eval_episodes": 2, "log_every": 100, "checkpoint_every": 0, "seed": 0}
GOLDEN_RUNS = {
    "sac": ("sac:tiny", {}),
    "redq": ("redq:tiny", {}),
    "rlpd": ("rlpd:tiny", {}),
    "sac_atradiff": ("atradiff:tiny", {"replay_capacity": 2000,
                                       "atradiff.synthetic_capacity": 4000,
                                       "atradiff.generator_steps": 50,
                                       "atradiff.estimator_steps": 50}),
}
# Metric/summary keys that measure wall time: recorded, never compared.
TIME_KEYS = ("train/env_steps_per_s", "env_steps_per_s", "wall_time_s", "atradiff/pretrain_s",
             "atradiff/generation_s", "atradiff/adaptation_s")
# Toolchain fields that must all match for the golden to be compared bitwise.
EXACT_TOOLCHAIN_KEYS = ("python", "jax", "jaxlib", "numpy", "mujoco", "gymnasium", "flax",
                        "optax", "machine", "cpu_model", "cpu_count")


def golden_config(name: str):
  """The ConfigDict of golden run `name` (preset from this checkout's configs/ + overrides)."""
  from jaxaug.configs_io import load_config_file  # pylint: disable=g-import-not-at-top
  if name not in GOLDEN_RUNS:
    raise ValueError(f"unknown golden run {name!r}; expected one of {tuple(GOLDEN_RUNS)}")
  preset, overrides = GOLDEN_RUNS[name]
  c = load_config_file(preset)
  for k, v in {**COMMON, **overrides}.items():
    node, *path = k.split(".")[::-1]
    target = c
    for part in reversed(path):
      target = target[part]
    if node not in target:
      raise ValueError(f"golden run {name}: config field {k!r} is not in {preset}")
    target[node] = v
  return c


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor()


def toolchain() -> dict:
  """Versions and CPU that decide floating-point results (XLA compiles for the host CPU)."""
  import importlib.metadata as md  # pylint: disable=g-import-not-at-top
  out = {"python": platform.python_version(), "machine": platform.machine(),
         "cpu_model": _cpu_model(), "cpu_count": os.cpu_count()}
  for pkg in ("jax", "jaxlib", "numpy", "mujoco", "gymnasium", "flax", "optax"):
    try:
      out[pkg] = md.version(pkg)
    except md.PackageNotFoundError:
      out[pkg] = None
  return out


def toolchain_matches(recorded: dict, current: dict) -> bool:
  return all(recorded.get(k) == current.get(k) for k in EXACT_TOOLCHAIN_KEYS)


def state_digest(tree) -> tuple[str, int]:
  """(sha256 over every leaf's path, dtype, shape and bytes, number of leaves)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  h = hashlib.sha256()
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  for path, leaf in leaves:
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(f"{jax.tree_util.keystr(path)}|{a.dtype.str}|{a.shape}|".encode())
    h.update(a.tobytes())
  return h.hexdigest(), len(leaves)


def final_agent_state(workdir: str, config):
  """(agent state, step) of the run's last checkpoint, through `online.load_agent_state`.

  jaxaug at 16ba351 (the loop this golden was first recorded from) cannot load_agent_state a
  run with extras (RLPD's offline mixer, ATraDiff): its restore target lacks the `extras` item
  that train_online saved. There the target is rebuilt the way train_online's resume builds it.
  """
  from jaxaug.train import online  # pylint: disable=g-import-not-at-top
  try:
    return online.load_agent_state(workdir, config)
  except ValueError as e:
    if "extras" not in str(e):
      raise
  import jax  # pylint: disable=g-import-not-at-top
  from jaxaug import envs  # pylint: disable=g-import-not-at-top
  from jaxaug.agents import get_agent  # pylint: disable=g-import-not-at-top
  from jaxaug.augment import online_hooks  # pylint: disable=g-import-not-at-top
  from jaxaug.data import replay  # pylint: disable=g-import-not-at-top
  from jaxaug.train.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
  agent = get_agent(config.get("agent_name") or "sac")
  spec = envs.env_spec(config.env_id)
  runner = online.EnvRunner(spec.env_id, 0, spec.act_dim)
  runner.close()
  extras = online_hooks.from_config(config, spec, workdir, runner.max_len, agent=agent)
  key = jax.random.key(0)
  target = online._checkpoint_target(  # pylint: disable=protected-access
      agent.init(key, spec, config.agent),
      replay.init_buffer(spec.obs_dim, spec.act_dim, int(config.replay_capacity)), key,
      spec.act_dim, spec.obs_dim, runner.max_len, [])
  target["extras"] = extras.state_dict()
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=None)
  try:
    step = ckpt.latest_step()
    restored = ckpt.restore(step, target)
  finally:
    ckpt.close()
  return restored["agent"], step


def read_metrics(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


def run_golden(name: str, workdir: str) -> dict:
  """Runs golden run `name` in `workdir` (fresh) and returns its record."""
  from jaxaug.train import online  # pylint: disable=g-import-not-at-top
  config = golden_config(name)
  t0 = time.time()
  online.train_online(config, workdir)
  wall = time.time() - t0
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  out = {"preset": GOLDEN_RUNS[name][0], "config": json.loads(config.to_json_best_effort()),
         "metrics": read_metrics(workdir), "summary": summary, "run_wall_s": wall}
  try:
    agent_state, step = final_agent_state(workdir, config)
  except ValueError as e:
    # The loop at db1b05a loads the states of runs without ATraDiff only (an ATraDiff state
    # needs its diffuser); ATraDiff's state is never compared with the golden.
    if not config.get("atradiff", {}).get("enabled", False):
      raise
    out.update(final_step=int(summary["steps"]), agent_state_sha256=None,
               agent_state_leaves=0, agent_state_error=str(e)[:300])
    return out
  digest, n_leaves = state_digest(agent_state)
  out.update(final_step=int(step), agent_state_sha256=digest, agent_state_leaves=n_leaves)
  return out


def merge_entry(path: str, entry: dict) -> dict:
  """The golden file's content with `entry`'s runs replacing those of the same toolchain."""
  payload = {"description": "experiments/record_online_golden.py: train_online golden runs "
                            "(GOLDEN_RUNS), one entry per toolchain", "entries": []}
  if os.path.exists(path):
    with open(path) as f:
      payload = json.load(f)
  for e in payload["entries"]:
    if toolchain_matches(e["toolchain"], entry["toolchain"]):  # same toolchain: update its runs
      e.update({k: v for k, v in entry.items() if k != "runs"})
      e["runs"].update(entry["runs"])
      return payload
  payload["entries"].append(entry)
  return payload


def main(argv=None) -> None:
  import argparse  # pylint: disable=g-import-not-at-top
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--out", required=True, help="golden JSON file (entries merged by toolchain)")
  p.add_argument("--runs", default=",".join(GOLDEN_RUNS),
                 help=f"comma-separated subset of {','.join(GOLDEN_RUNS)}")
  p.add_argument("--source", default="", help="what tree is recorded (e.g. a git revision)")
  p.add_argument("--workdir", default="", help="where the runs write (default: a temp dir)")
  args = p.parse_args(argv)
  names = [n for n in args.runs.split(",") if n]
  for n in names:
    if n not in GOLDEN_RUNS:
      p.error(f"--runs: unknown run {n!r}; expected names from {tuple(GOLDEN_RUNS)}")
  import jaxaug  # pylint: disable=g-import-not-at-top
  tree = os.path.dirname(os.path.dirname(os.path.abspath(jaxaug.__file__)))
  print(f"recording the jaxaug tree at {tree}", flush=True)
  base = args.workdir or tempfile.mkdtemp(prefix="online_golden_")
  runs = {}
  for n in names:
    runs[n] = run_golden(n, os.path.join(base, n))
    s = runs[n]["summary"]
    print(f"{n}: {runs[n]['run_wall_s']:.1f} s, last eval {s['last_eval']}, "
          f"sha256 {runs[n]['agent_state_sha256'][:16]}", flush=True)
  entry = {"toolchain": toolchain(), "source": args.source, "tree": tree,
           "argv": sys.argv, "runs": runs}
  from jaxaug.bench import write_json  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  write_json(args.out, merge_entry(args.out, entry))
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
