r"""Quality of ATraDiff's synthetic trajectories against the MuJoCo oracle.

  python experiments/atradiff_quality.py --config=configs/atradiff.py:cpu-hopper \
      --diffuser_dir=/tmp/atradiff_bench/diffuser --num_starts=512

Restores (or, without --diffuser_dir, trains) the diffuser of `config.atradiff`, synthesises
trajectories from `num_starts` offline start states with the same batched call as the online
rounds, and prints JSON: kept-length statistics, the generator choice histogram, dynamic MSE of
the synthetic transitions (oracle next state vs generated next state, per-dimension normalised
by the dataset's state std) and the mean absolute error of generated rewards vs oracle rewards.
`per_generator` adds, for every generator length k on the same start states: how far its
generated first state is from the condition (normalised MSE; the stored trajectory replaces it
by the true start state, but a large value shows a generator that ignores its condition), and
the dynamic MSE and reward error of all its k - 1 transitions before pruning.
"""

from __future__ import annotations

import functools
import json

from absl import app, flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

from jaxaug.augment.atradiff import diffuser as adiff
from jaxaug.data.loaders import load_dataset
from jaxaug.data.normalize import NormStats
from jaxaug.metrics.quality import quality_metrics
from jaxaug.train.checkpoint import Checkpointer

_CONFIG = config_flags.DEFINE_config_file("config", "configs/atradiff.py:tiny", "ATraDiff config")
_DIR = flags.DEFINE_string("diffuser_dir", "", "trained diffuser (an atradiff_diffuser dir)")
_N = flags.DEFINE_integer("num_starts", 512, "offline start states")
_SEED = flags.DEFINE_integer("seed", 0, "seed")


def per_generator_quality(d, key, start_states: np.ndarray, env_id: str, stats: NormStats):
  """{k: first_state_err, mse, reward_abs_err} of every generator on the same start states."""
  od, ad = d.spec.obs_dim, d.spec.act_dim
  cond = adiff.condition(d, jnp.asarray(start_states))
  windows = jax.jit(lambda k, c: adiff.generate_windows(d, k, c))(key, cond)
  std = np.asarray(stats.std)
  out = {}
  for k_len, w in zip(d.spec.lengths, windows):
    raw = np.asarray(w * d.stats.std + d.stats.mean)
    states = raw[:, :, :od].copy()
    first_err = float((((states[:, 0] - start_states) / std) ** 2).mean())
    states[:, 0] = start_states  # what synthesize stores
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    q = quality_metrics(env_id, flat(states[:, :-1]), np.clip(flat(raw[:, :-1, od:od + ad]), -1, 1),
                        flat(states[:, 1:]), rewards=flat(raw[:, :-1, -1]), obs_stats=stats)
    out[int(k_len)] = {"first_state_err": first_err, "mse": q["mse"],
                       "reward_abs_err": q["reward_abs_err"]}
  return out


def main(argv):
  del argv
  config = _CONFIG.value
  acfg = config.atradiff
  ds = load_dataset(acfg.offline_dataset)
  key = jax.random.key(_SEED.value)
  if _DIR.value:
    ckpt = Checkpointer(_DIR.value, max_to_keep=1)
    if ckpt.latest_step() is None:
      raise ValueError(f"--diffuser_dir {_DIR.value}: no trained diffuser there")
    d = ckpt.restore(ckpt.latest_step(), adiff.train_diffuser(key, ds, acfg, train=False))
    ckpt.close()
  else:
    d = adiff.train_diffuser(key, ds, acfg)
  rng = np.random.default_rng(_SEED.value)
  idx = rng.choice(len(ds), size=min(_N.value, len(ds)), replace=False)
  q = int(acfg.queue_size)
  terminal_fn = adiff.terminal_fn_from_config(acfg, config.env_id)
  fn = jax.jit(functools.partial(adiff.synthesize, terminal_fn=terminal_fn))
  obs, act, nxt, rew, term, lengths, gens = [], [], [], [], [], [], []
  for i in range(0, len(idx), q):
    part = ds.observations[idx[i:i + q]]
    m = len(part)
    chunk = np.zeros((q, ds.obs_dim), np.float32)
    chunk[:m] = part
    key, k = jax.random.split(key)
    tr, mask, info = fn(d, k, jnp.asarray(chunk), jnp.asarray(np.arange(q) < m))
    mask = np.asarray(mask)
    obs.append(np.asarray(tr.observations)[mask])
    act.append(np.asarray(tr.actions)[mask])
    nxt.append(np.asarray(tr.next_observations)[mask])
    rew.append(np.asarray(tr.rewards)[mask])
    term.append(np.asarray(tr.terminals)[mask])
    lengths.append(np.asarray(info["length"])[:m])
    gens.append(np.asarray(info["generator"])[:m])
  obs, act, nxt, rew, term = (np.concatenate(x) for x in (obs, act, nxt, rew, term))
  lengths, gens = np.concatenate(lengths), np.concatenate(gens)
  env_id = config.env_id
  stats = NormStats.fit(ds.observations)
  syn = quality_metrics(env_id, obs, np.clip(act, -1, 1), nxt, rewards=rew, terminals=term,
                        obs_stats=stats)
  real_idx = rng.choice(len(ds), size=min(len(obs), len(ds)), replace=False)
  real = quality_metrics(env_id, ds.observations[real_idx], ds.actions[real_idx],
                         ds.next_observations[real_idx], rewards=ds.rewards[real_idx],
                         terminals=ds.terminals[real_idx], obs_stats=stats)
  # Reference for "no dynamics at all": real (s, a) with the next state of another transition.
  shuffled = quality_metrics(env_id, ds.observations[real_idx], ds.actions[real_idx],
                             ds.next_observations[rng.permutation(real_idx)], obs_stats=stats)
  keep = ("mse", "n_valid", "reward_abs_err", "reward_mean", "oracle_reward_mean",
          "terminal_agreement", "oracle_terminal_rate")
  out = {
      "num_trajectories": int(len(lengths)), "num_transitions": int(len(obs)),
      "terminal_fn": acfg.get("terminal_fn", "none"), "terminal_rate": float(term.mean()),
      "kept_length_mean": float(lengths.mean()),
      "kept_length_quantiles_10_50_90": np.quantile(lengths, [0.1, 0.5, 0.9]).tolist(),
      "generator_counts": {int(k): int((gens == i).sum()) for i, k in enumerate(d.spec.lengths)},
      "synthetic": {k: syn[k] for k in keep}, "real": {k: real[k] for k in keep},
      "random_pairing_mse": shuffled["mse"],
      "per_generator": per_generator_quality(d, jax.random.fold_in(key, 7),
                                             ds.observations[idx[:256]], env_id, stats),
  }
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  app.run(main)
