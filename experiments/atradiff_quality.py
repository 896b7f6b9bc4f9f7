r"""Quality of ATraDiff's synthetic trajectories against the MuJoCo oracle.

  python experiments/atradiff_quality.py --config=configs/atradiff.py:cpu-hopper \
      --diffuser_dir=/tmp/atradiff_bench/diffuser --num_starts=512

Restores (or, without --diffuser_dir, trains) the diffuser of `config.atradiff`, synthesises
trajectories from `num_starts` offline start states with the online rounds' routed generation
call (`diffuser.generate_into`, one round over all of them), and prints JSON: kept-length
statistics, the generator choice histogram, dynamic MSE of the synthetic transitions (oracle
next state vs generated next state, per-dimension normalised by the dataset's state std) and
the mean absolute error of generated rewards vs oracle rewards.
`per_generator` adds, for every generator length k on the same start states: how far its
generated first state is from the condition (normalised MSE; the stored trajectory replaces it
by the true start state, but a large value shows a generator that ignores its condition), and
the dynamic MSE and reward error of all its k - 1 transitions before pruning.

Actions outside the environment's action range are counted, not hidden: `action_out_of_range`
gives the stored rows (and action entries) whose generated action lay outside the range, and
`per_generator` the same share per generator. The actions passed to the oracle are the ones
the online loop stores: clipped when `config.atradiff.clip_actions` (the default), raw
otherwise.
"""

from __future__ import annotations

import functools
import json

from absl import app, flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

from jaxaug import envs
from jaxaug.augment.atradiff import diffuser as adiff
from jaxaug.augment.atradiff import store as astore
from jaxaug.data import replay
from jaxaug.data.loaders import load_dataset
from jaxaug.data.normalize import NormStats
from jaxaug.metrics.quality import quality_metrics

_CONFIG = config_flags.DEFINE_config_file("config", "configs/atradiff.py:tiny", "ATraDiff config")
_DIR = flags.DEFINE_string("diffuser_dir", "", "trained diffuser (an atradiff_diffuser dir)")
_N = flags.DEFINE_integer("num_starts", 512, "offline start states")
_SEED = flags.DEFINE_integer("seed", 0, "seed")


def per_generator_quality(d, key, start_states: np.ndarray, env_id: str, stats: NormStats,
                          max_action: float = 1.0, clip_actions: bool = True):
  """{k: first_state_err, mse, reward_abs_err, out_of_range_entry_share} of every generator on
  the same start states (actions clipped to +-max_action first if clip_actions)."""
  od, ad = d.spec.obs_dim, d.spec.act_dim
  cond = adiff.condition(d, jnp.asarray(start_states))
  windows = jax.jit(lambda k, c: adiff.generate_windows(d, k, c))(key, cond)
  std = np.asarray(stats.std)
  out = {}
  for k_len, w in zip(d.spec.lengths, windows):
    raw = np.asarray(w * d.stats.std + d.stats.mean)
    states = raw[:, :, :od].copy()
    first_err = float((((states[:, 0] - start_states) / std) ** 2).mean())
    states[:, 0] = start_states  # what generate_into stores
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    actions = flat(raw[:, :-1, od:od + ad])
    outside = float((np.abs(actions) > max_action).mean())
    if clip_actions:
      actions = np.clip(actions, -max_action, max_action)
    q = quality_metrics(env_id, flat(states[:, :-1]), actions, flat(states[:, 1:]),
                        rewards=flat(raw[:, :-1, -1]), obs_stats=stats)
    out[int(k_len)] = {"first_state_err": first_err, "mse": q["mse"],
                       "reward_abs_err": q["reward_abs_err"],
                       "out_of_range_entry_share": outside}
  return out


def main(argv):
  del argv
  config = _CONFIG.value
  acfg = config.atradiff
  ds = load_dataset(acfg.offline_dataset)
  key = jax.random.key(_SEED.value)
  if _DIR.value:  # refuses a diffuser trained on another dataset or diffuser config
    d, _ = astore.restore(_DIR.value, key, ds, acfg,
                          astore.fingerprint(ds, acfg.offline_dataset, acfg))
    if d is None:
      raise ValueError(f"--diffuser_dir {_DIR.value}: no trained diffuser there")
  else:
    d = adiff.train_diffuser(key, ds, acfg)
  rng = np.random.default_rng(_SEED.value)
  idx = rng.choice(len(ds), size=min(_N.value, len(ds)), replace=False)
  terminal_fn = adiff.terminal_fn_from_config(acfg, config.env_id)
  max_action = float(envs.env_spec(config.env_id).max_action)
  clip = bool(acfg.get("clip_actions", True))
  # One routed generation round over all start states, as the online loop generates.
  n = len(idx)
  buf = replay.init_buffer(ds.obs_dim, ds.act_dim, n * (d.spec.max_length - 1))
  bucket = int(acfg.get("bucket_size", 16))
  fn = jax.jit(functools.partial(adiff.generate_into, bucket_size=bucket,
                                 terminal_fn=terminal_fn, max_action=max_action,
                                 clip_actions=clip))
  key, k = jax.random.split(key)
  buf, info = fn(d, None, buf, k, jnp.asarray(ds.observations[idx], jnp.float32), jnp.int32(n),
                 None)
  rows = jax.tree.map(lambda x: np.asarray(x)[:int(buf.size)], buf.data)
  obs, act, nxt, rew, term = (rows.observations, rows.actions, rows.next_observations,
                              rows.rewards, rows.terminals)
  lengths, gens = np.asarray(info["length"]), np.asarray(info["generator"])
  out_rows, out_entries = int(info["out_of_range_rows"]), int(info["out_of_range_entries"])
  env_id = config.env_id
  stats = NormStats.fit(ds.observations)
  syn = quality_metrics(env_id, obs, act, nxt, rewards=rew, terminals=term, obs_stats=stats)
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
      "action_out_of_range": {
          "max_action": max_action, "clipped": clip, "rows": out_rows,
          "row_share": out_rows / max(len(obs), 1), "entries": out_entries,
          "entry_share": out_entries / max(act.size, 1)},
      "kept_length_quantiles_10_50_90": np.quantile(lengths, [0.1, 0.5, 0.9]).tolist(),
      "generator_counts": {int(k): int((gens == i).sum()) for i, k in enumerate(d.spec.lengths)},
      "synthetic": {k: syn[k] for k in keep}, "real": {k: real[k] for k in keep},
      "random_pairing_mse": shuffled["mse"],
      "per_generator": per_generator_quality(d, jax.random.fold_in(key, 7),
                                             ds.observations[idx[:256]], env_id, stats,
                                             max_action, clip),
  }
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  app.run(main)
