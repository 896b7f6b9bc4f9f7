r"""A sweep as one sharded program vs the same points as sequential single runs.

  python experiments/bench_sweep.py --devices=4 --alphas=1,2.5,5,10 --seeds=4 \
      --num_steps=200 --out=bench_sweep.json
  python experiments/bench_sweep.py --bench=gta --devices=4 --lrs=3e-4,1e-3 --seeds=2 \
      --num_steps=20 --updates_per_dispatch=10 --out=bench_sweep_gta.json

`--bench=td3bc` (default): a TD3+BC sweep over agent.alpha x seed (train_offline per point when
sequential). `--bench=gta`: a GTA generator sweep over diffusion.learning_rate x seed
(configs/gta.py:tiny, batch `--gen_batch_size`; train_generator per point when sequential).
`--bench=sac`: an online SAC sweep over agent.tau x seed on Hopper (configs/sac.py:tiny,
`--num_steps` env steps per point with `--start_steps` random ones; one env per point;
train_online per point when sequential):
  python experiments/bench_sweep.py --bench=sac --devices=4 --taus=0.005,0.01 --seeds=2 \
      --num_steps=1000 --start_steps=200 --out=bench_sweep_sac.json

Each variant runs in its own subprocess with `--devices` fake CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count), in the same invocation:
  sweep       experiments/sweep.py's runner: all points in one jitted program, the sweep axis
              sharded over the devices (one program compiled);
  sequential  train_offline once per point, one after another (each a data-parallel run on the
              same devices, compiling its own program, as separate jobs would).
Both: the tiny preset, no evaluation, one checkpoint at the end. Reported: wall time
(data loading, compilation, training, checkpoints: what a user waits for) and updates/s per
point (num_steps / wall for the sweep, whose points advance together; num_steps / that run's
wall for each sequential run) plus the aggregate updates/s. On a shared CPU only the ratio of
the two variants measured in one invocation means something.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DEVICES = flags.DEFINE_integer("devices", 4, "fake CPU devices per variant")
_ALPHAS = flags.DEFINE_list("alphas", ["1", "2.5", "5", "10"], "TD3+BC alpha values")
_SEEDS = flags.DEFINE_integer("seeds", 4, "seeds per alpha")
_STEPS = flags.DEFINE_integer("num_steps", 200, "updates per point")
_K = flags.DEFINE_integer("updates_per_dispatch", 100, "updates per dispatch")
_BENCH = flags.DEFINE_enum("bench", "td3bc", ["td3bc", "gta", "sac"], "which sweep")
_TAUS = flags.DEFINE_list("taus", ["0.005", "0.01"], "sac: target smoothing values")
_START = flags.DEFINE_integer("start_steps", 200, "sac: random start steps per point")
_LRS = flags.DEFINE_list("lrs", ["3e-4", "1e-3"], "gta: diffusion learning rates")
_GEN_BATCH = flags.DEFINE_integer("gen_batch_size", 64, "gta: batch size")
_OUT = flags.DEFINE_string("out", "bench_sweep.json", "JSON output")
_VARIANT = flags.DEFINE_string("variant", "", "internal: run one variant in this process")
_WORKDIR = flags.DEFINE_string("variant_workdir", "", "internal")


def _config():
  sys.path.insert(0, ROOT)
  if _BENCH.value == "sac":
    from configs import sac as sac_config  # pylint: disable=g-import-not-at-top
    c = sac_config.get_config("tiny")
    c.update(dict(num_env_steps=_STEPS.value, start_steps=_START.value, log_every=_STEPS.value,
                  eval_every=0, checkpoint_every=0, replay_capacity=max(_STEPS.value, 1000)))
    return c
  if _BENCH.value == "gta":
    from configs import gta as gta_config  # pylint: disable=g-import-not-at-top
    c = gta_config.get_config("tiny")
    c.update(dict(num_steps=_STEPS.value, updates_per_dispatch=_K.value, log_every=_STEPS.value,
                  checkpoint_every=0, batch_size=_GEN_BATCH.value))
    return c
  from configs import td3bc as td3bc_config  # pylint: disable=g-import-not-at-top
  c = td3bc_config.get_config("tiny")
  c.update(dict(num_steps=_STEPS.value, updates_per_dispatch=_K.value, log_every=_STEPS.value,
                eval_every=0, eval_episodes=0, checkpoint_every=0))
  return c


def _spec() -> str:
  if _BENCH.value == "sac":
    return f"agent.tau=[{','.join(_TAUS.value)}] seed=range({_SEEDS.value})"
  if _BENCH.value == "gta":
    return f"diffusion.learning_rate=[{','.join(_LRS.value)}] seed=range({_SEEDS.value})"
  return f"agent.alpha=[{','.join(_ALPHAS.value)}] seed=range({_SEEDS.value})"


def run_variant(name: str, workdir: str) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  from jaxaug.train import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  from jaxaug.train.offline import train_offline  # pylint: disable=g-import-not-at-top
  config = _config()
  points = sweep_lib.parse_spec(_spec())
  n = _STEPS.value
  t0 = time.perf_counter()
  where = f"configs/{_BENCH.value}.py:tiny"
  if _BENCH.value == "gta":
    from jaxaug.augment import pipeline  # pylint: disable=g-import-not-at-top
    single = pipeline.train_generator
  elif _BENCH.value == "sac":
    from jaxaug.train.online import train_online  # pylint: disable=g-import-not-at-top
    single = train_online
  else:
    single = train_offline
  if name == "sweep":
    sweep_lib.run_sweep(config, points, workdir, where=where, spec=_spec())
    wall = time.perf_counter() - t0
    per_point = [n / wall] * len(points)
  else:
    per_point = []
    for i, p in enumerate(points):
      t = time.perf_counter()
      single(sweep_lib.apply_overrides(config, p), os.path.join(workdir, str(i)))
      per_point.append(n / (time.perf_counter() - t))
    wall = time.perf_counter() - t0
  return {"bench": _BENCH.value, "variant": name, "devices": len(jax.devices()),
          "points": len(points),
          "num_steps": n, "wall_s": wall,
          "updates_per_s_per_point_mean": sum(per_point) / len(per_point),
          "updates_per_s_total": n * len(points) / wall}


def main(argv):
  del argv
  if _VARIANT.value:
    print("RESULT " + json.dumps(run_variant(_VARIANT.value, _WORKDIR.value)))
    return
  sys.path.insert(0, ROOT)
  from jaxaug import bench  # pylint: disable=g-import-not-at-top
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={_DEVICES.value}",
             PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for name in ("sweep", "sequential"):
      argv = [sys.executable, os.path.abspath(__file__), f"--variant={name}",
              f"--variant_workdir={os.path.join(tmp, name)}", f"--num_steps={_STEPS.value}",
              f"--updates_per_dispatch={_K.value}", f"--alphas={','.join(_ALPHAS.value)}",
              f"--seeds={_SEEDS.value}", f"--bench={_BENCH.value}",
              f"--lrs={','.join(_LRS.value)}", f"--gen_batch_size={_GEN_BATCH.value}",
              f"--taus={','.join(_TAUS.value)}", f"--start_steps={_START.value}"]
      load = os.getloadavg()[0]
      r = subprocess.run(argv, env=env, capture_output=True, text=True)
      if r.returncode:
        raise RuntimeError(f"variant {name} failed:\n{r.stderr[-3000:]}")
      row = json.loads(next(l for l in r.stdout.splitlines()
                            if l.startswith("RESULT "))[len("RESULT "):])
      row["load_avg_1min_at_start"] = load
      rows.append(row)
      print(json.dumps(row))
  sweep, seq = rows
  payload = {"spec": _spec(), "rows": rows,
             "speedup_wall_sequential_over_sweep": seq["wall_s"] / sweep["wall_s"],
             "machine": bench.machine_info()}
  print(f"sweep {sweep['wall_s']:.1f} s vs sequential {seq['wall_s']:.1f} s: "
        f"{payload['speedup_wall_sequential_over_sweep']:.2f}x")
  bench.write_json(_OUT.value, payload)


if __name__ == "__main__":
  app.run(main)
