"""ATraDiff generation round: every generator on every queued state (`diffuser.synthesize` + a
masked write, the old online round) vs routed generation (`diffuser.generate_into`: each state
sampled only by the generator its estimated length selects, in chunks of `bucket_size`).

Per diffuser size (the `tiny` preset's and `sac-hopper`'s generator sizes), on Q queued start
states drawn from the offline data, both arms run in the same process, interleaved (old, new,
old, new, ...), and the script prints ms per round (median) and trajectories sampled per
trajectory kept (old: M, one window per generator; new: sum_j ceil(n_j / b) b / Q).

Generators are randomly initialised (the work does not depend on their weights); the length
estimator, which decides the routing, is trained on the offline data (`--estimator_steps`), or
`--routing=spread` replaces it by one that sends equal shares of the queue to every generator
(the case with the most partly filled chunks).

  python experiments/bench_atradiff_generation.py --out=/tmp/bench_atradiff_generation.json
  python experiments/bench_atradiff_generation.py --presets=sac-hopper --num_sample_steps=8 \
      --bucket_sizes=16,64 --routing=spread
"""

from __future__ import annotations

import json
import time

from absl import app, flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxaug import bench
from jaxaug.augment.atradiff import diffuser as adiff
from jaxaug.augment.atradiff import length as alength
from jaxaug.configs_io import load_config_file
from jaxaug.data import replay
from jaxaug.data.loaders import load_dataset
from jaxaug.envs import termination

_PRESETS = flags.DEFINE_list("presets", ["tiny", "sac-hopper"],
                             "configs/atradiff.py presets whose diffuser sizes are timed")
_DATASET = flags.DEFINE_string("dataset", "embedded:hopper-medium-replay",
                               "offline data: start states and the estimator's training data")
_Q = flags.DEFINE_integer("queue", 64, "start states per generation round")
_BUCKETS = flags.DEFINE_list("bucket_sizes", ["16"], "routed chunk sizes to time")
_STEPS = flags.DEFINE_integer("num_sample_steps", 0, "Heun steps (0: the preset's)")
_ROUTING = flags.DEFINE_enum("routing", "estimator", ["estimator", "spread"],
                             "estimator: trained length estimator; spread: equal shares")
_EST_STEPS = flags.DEFINE_integer("estimator_steps", 1000, "estimator training steps")
_REPEATS = flags.DEFINE_integer("repeats", 3, "timed rounds per arm (interleaved)")
_OUT = flags.DEFINE_string("out", "", "write the figures here as JSON too")


def remaining_steps(ds) -> np.ndarray:
  """Transitions left in the episode from each row, this one included (1 at an episode's end)."""
  ends = (np.asarray(ds.terminals) > 0) | (np.asarray(ds.timeouts) > 0)
  ends[-1] = True
  out = np.zeros(len(ends), np.int64)
  left = 0
  for i in range(len(ends) - 1, -1, -1):
    left = 1 if ends[i] else left + 1
    out[i] = left
  return out


def train_estimator(d, ds, steps, lr, key):
  cond = adiff.condition(d, jnp.asarray(ds.observations, jnp.float32))
  rem = jnp.asarray(remaining_steps(ds))
  est = alength.init_estimator(key, d.spec.cond_dim, d.spec.lengths,
                               tuple(d.estimator.net.hidden_dims), lr)

  def step(s, k):
    idx = jax.random.randint(k, (256,), 0, cond.shape[0])
    return alength.update(s, cond[idx], rem[idx])

  est, _ = jax.jit(lambda s, k: jax.lax.scan(step, s, jax.random.split(k, steps)))(
      est, jax.random.fold_in(key, 1))
  return d.replace(estimator=est)


class _RankLookup(nn.Module):
  """Estimator network without parameters: the prediction (in units of max_target) is the
  value of the interval of `cuts` that the first condition coordinate falls in."""

  cuts: tuple
  values: tuple

  @nn.compact
  def __call__(self, x):
    idx = jnp.searchsorted(jnp.asarray(self.cuts, jnp.float32), x[:, 0])
    return jnp.asarray(self.values, jnp.float32)[idx][:, None]


def spread_queue(d, starts):
  """d with an estimator sending equal shares of `starts` to every generator (by the rank of
  their first normalised coordinate)."""
  m = len(d.spec.lengths)
  x = np.asarray(adiff.condition(d, starts))[:, 0]
  cuts = tuple(float(c) for c in np.quantile(x, np.arange(1, m) / m))
  values = tuple((k - 0.5) / d.estimator.max_target for k in d.spec.lengths)
  return d.replace(estimator=d.estimator.replace(params={}, net=_RankLookup(cuts, values)))


def main(argv):
  del argv
  ds = load_dataset(_DATASET.value)
  rng = np.random.default_rng(0)
  q = _Q.value
  results = []
  for preset in _PRESETS.value:
    config = load_config_file(f"atradiff:{preset}")
    acfg = config.atradiff
    acfg.offline_dataset = _DATASET.value
    if _STEPS.value > 0:
      acfg.num_sample_steps = _STEPS.value
    d = adiff.train_diffuser(jax.random.key(0), ds, acfg, train=False)
    starts = jnp.asarray(ds.observations[rng.choice(len(ds), q, replace=False)], jnp.float32)
    if _ROUTING.value == "estimator":
      d = train_estimator(d, ds, _EST_STEPS.value, float(acfg.estimator_lr), jax.random.key(1))
    else:
      d = spread_queue(d, starts)
    cond = adiff.condition(d, starts)
    choice = np.asarray(adiff.route(d, cond))
    counts = np.bincount(choice, minlength=len(d.spec.lengths))
    rule = termination.termination_fn(config.env_id)
    tasks = jnp.zeros((q,), jnp.int32)
    buf = replay.init_buffer(d.spec.obs_dim, d.spec.act_dim, 100_000)
    old = jax.jit(lambda b, k: replay.add_masked(b, *adiff.synthesize(
        d, k, starts, jnp.ones((q,), bool), tasks, rule, max_action=1.0)[:2]))
    arms = {"old": lambda k: old(buf, k)}
    for b in _BUCKETS.value:
      fn = jax.jit(lambda s, k, b=int(b): adiff.generate_into(
          d, None, s, k, starts, jnp.int32(q), tasks, bucket_size=b, terminal_fn=rule,
          max_action=1.0))
      arms[f"new_b{b}"] = lambda k, fn=fn: fn(buf, k)
    infos, inner = {}, {}
    for name, fn in arms.items():  # compile + warm up; calls per sample: ~0.3 s of work
      t = time.perf_counter()
      out = bench.block(fn(jax.random.key(0)))
      infos[name] = out[1] if name != "old" else None
      print(f"{preset} {name}: first call {time.perf_counter() - t:.1f} s", flush=True)
      one = bench.time_fn(lambda fn=fn: fn(jax.random.key(0)), repeats=1, warmup=0)
      inner[name] = max(1, int(round(0.3 / one)))
    times = {name: [] for name in arms}
    for r in range(_REPEATS.value):  # interleaved: old, new_b..., old, new_b..., ...
      for name, fn in arms.items():
        keys = [jax.random.key(1000 * r + i) for i in range(inner[name])]
        t = bench.time_fn(lambda fn=fn, keys=keys: [fn(k) for k in keys], repeats=1, warmup=0)
        times[name].append(t / inner[name])
    m = len(d.spec.lengths)
    row = {"preset": preset, "lengths": list(d.spec.lengths),
           "width": int(acfg.denoiser_width), "blocks": int(acfg.denoiser_blocks),
           "num_sample_steps": int(acfg.num_sample_steps), "queue": q,
           "routing": _ROUTING.value, "routed_counts": counts.tolist(),
           "old_ms": 1e3 * float(np.median(times["old"])),
           "old_sampled_per_kept": float(m)}
    for b in _BUCKETS.value:
      info = infos[f"new_b{b}"]
      chunks = int(info["chunks"])
      row[f"new_b{b}_ms"] = 1e3 * float(np.median(times[f"new_b{b}"]))
      row[f"new_b{b}_chunks"] = chunks
      row[f"new_b{b}_sampled_per_kept"] = chunks * int(b) / q
      row[f"new_b{b}_speedup"] = row["old_ms"] / row[f"new_b{b}_ms"]
    results.append(row)
    print(json.dumps(row), flush=True)
  if _OUT.value:
    bench.write_json(_OUT.value, {"machine": bench.machine_info(), "results": results})


if __name__ == "__main__":
  app.run(main)
