"""Offline RL end to end: load and validate a dataset, normalise, (optionally) add generated
data, train any registered agent with the generic loop, evaluate in gymnasium.

This is what `experiments/train_offline.py` calls; researchers can call `train_offline` from
their own code with a ConfigDict built from configs/*.py.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxaug import agents as agents_lib
from jaxaug import envs
from jaxaug.augment import composed as composed_lib
from jaxaug.augment import s4rl
from jaxaug.data import dataset as dataset_lib
from jaxaug.data import loaders, normalize, replay, validate
from jaxaug.train import config_io
from jaxaug.train import mesh as mesh_lib
from jaxaug.train.checkpoint import Checkpointer
from jaxaug.train.loop import LoopConfig, run_training
from jaxaug.utils import atomic_write_text


def infer_env_id(config, ds) -> str:
  """config.env_id, else the dataset's metadata env id, else a name derived from config.dataset."""
  if config.env_id:
    return envs.resolve_env_id(config.env_id)
  for key in ("env_id", "env_name", "env"):
    if isinstance(ds.metadata.get(key), str):
      return envs.resolve_env_id(ds.metadata[key])
  name = os.path.basename(config.dataset.split(":", 1)[-1])
  try:
    return envs.resolve_env_id(os.path.splitext(name)[0])
  except ValueError as e:
    raise ValueError(f"cannot infer the environment for config.dataset={config.dataset!r}: set "
                     "--config.env_id (e.g. Hopper-v5)") from e


def resolve_env(config, ds):
  """(env_id, EnvSpec) for training: the environment named by config.env_id or the dataset
  (locomotion and the suites of jaxaug/envs/suites), with its dimensions."""
  env_id = infer_env_id(config, ds)  # config.env_id, the file's metadata or its name
  return env_id, envs.env_spec(env_id)


def prepare_data(config, ds, spec):
  """Normalise observations/rewards (statistics fitted on the real data) and add generated data.

  Returns (device data pytree, sample_fn, obs_stats, reward_transform). The composed mode
  (`augment.source`) needs more pieces: `prepare_run`.
  """
  data, sample_fn, obs_stats, reward_tf, _ = prepare_run(config, ds, spec)
  return data, sample_fn, obs_stats, reward_tf


def prepare_run(config, ds, spec, mesh=None):
  """prepare_data plus, with `augment.source = generator:WORKDIR`, the composed augmentation
  (jaxaug.augment.composed.Composed; None otherwise): its data replaces the plain data."""
  obs_stats = normalize.NormStats.fit(ds.observations) if config.normalize_obs else None
  reward_tf = normalize.fit_reward_transform(ds, config.reward_normalization)

  def prep(d):
    if obs_stats is not None:
      d = normalize.normalize_dataset(d, obs_stats)
    return normalize.transform_rewards(d, reward_tf)

  real = prep(ds).transitions()
  sample_fn = dataset_lib.sample_transitions
  data: Any = real
  aug = config.augment
  comp = None
  if composed_lib.is_composed(config):
    comp = composed_lib.build(config, ds, real, obs_stats, reward_tf, mesh,
                              num_seeds=int(config.num_seeds))
    data, sample_fn = comp.data, comp.sample_fn
  elif aug.path:
    gen = loaders.load_dataset(aug.path, env_spec=spec, episodic=False)
    gen_t = prep(gen).transitions()
    if aug.mode == "concat":  # GTA's way: original plus generated, sampled uniformly
      data = dataset_lib.concatenate([real, gen_t])
    elif aug.mode == "replace":  # SynthER's way: generated only
      data = gen_t
    elif aug.mode == "mix":  # fixed share of every batch from the generated data
      if not 0.0 <= aug.synthetic_ratio <= 1.0:
        raise ValueError(f"config.augment.synthetic_ratio must be in [0, 1], got "
                         f"{aug.synthetic_ratio}")
      ratios = (1.0 - aug.synthetic_ratio, aug.synthetic_ratio)
      data = (real, gen_t)
      sample_fn = lambda d, key, n: replay.sample_mixed(d, ratios, key, n)
    else:
      raise ValueError(f"config.augment.mode must be concat, replace or mix, got {aug.mode!r}")
  s4rl_std = float(aug.get("s4rl_std", 0.0))
  if s4rl_std < 0:
    raise ValueError(f"config.augment.s4rl_std must be >= 0, got {s4rl_std}")
  if s4rl_std > 0:
    # S4RL: fresh Gaussian noise on the states of every sampled batch (inside the jitted step).
    # The std is in raw state units; with normalised observations it is divided by their std.
    scale = None if obs_stats is None else jnp.asarray(1.0 / obs_stats.std, jnp.float32)
    base_fn = sample_fn

    def sample_fn(d, key, n):
      k_batch, k_noise = jax.random.split(key)
      return s4rl.augment_batch(base_fn(d, k_batch, n), k_noise, s4rl_std, scale)
  return data, sample_fn, obs_stats, reward_tf, comp


def _check_resume_generator(workdir: str | None, meta: dict) -> None:
  """A composed run resumes only with the generator (workdir and checkpoint) it started with:
  the synthetic buffer in its checkpoint came from that generator."""
  if workdir is None or not os.path.isdir(os.path.join(workdir, "checkpoints")):
    return
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
  try:
    latest = ckpt.latest_step()
    if latest is None:
      return
    old = ckpt.restore_meta(latest).get("generator")
  finally:
    ckpt.close()
  new = meta["generator"]
  keys = ("workdir", "method", "checkpoint_step")
  if old is None or any(old.get(k) != new[k] for k in keys):
    raise ValueError(
        f"--workdir={workdir}: its checkpoint of step {latest} was made with generator "
        f"{None if old is None else {k: old.get(k) for k in keys}}; config.augment.source now "
        f"gives {({k: new[k] for k in keys})}. Resume with the same generator or choose another "
        "--workdir")


def make_eval_fn(agent, config, env_id, obs_stats):
  """Host evaluation of every seed; logs the seed mean and each seed's normalised score."""
  num_seeds = config.num_seeds

  def eval_fn(state, step):
    scores, returns = [], []
    for i in range(num_seeds):
      base = jax.random.fold_in(jax.random.key(config.seed + i), step)
      seed_state = jax.tree.map(lambda x, i=i: x[i], state) if num_seeds > 1 else state
      # Env step t (1, 2, ...) acts with fold_in(base, t): one small jitted call on just the
      # leaves `act` reads, the key folded in inside it (docs/performance.md).
      policy = envs.make_policy(agent.act, seed_state, base, deterministic=True)
      res = envs.evaluate(policy, env_id,
                          config.eval_episodes, seed=10_000 * (config.seed + i) + step,
                          obs_stats=obs_stats)
      scores.append(res["normalized_score_mean"])
      returns.append(res["return_mean"])
    out = {"eval/normalized_score": float(np.mean(scores)), "eval/return": float(np.mean(returns))}
    if num_seeds > 1:
      out.update({f"eval/normalized_score_seed{config.seed + i}": s for i, s in enumerate(scores)})
    return out

  return eval_fn


def train_offline(config: ml_collections.ConfigDict, workdir: str | None) -> dict:
  """Train `config.agent_name` on `config.dataset`; returns a summary dict (also summary.json)."""
  mesh_lib.maybe_initialize_distributed(config.get("distributed", False))
  mesh = mesh_lib.make_data_mesh()
  is_main = mesh_lib.is_main_process()
  agent = agents_lib.get_agent(config.agent_name)

  ds = loaders.load_dataset(config.dataset)
  env_id, spec = resolve_env(config, ds)
  # Suites: a layout mismatch names both layouts; a missing extra fails before training.
  envs.check_dataset_layout(env_id, ds.obs_dim, ds.act_dim, source=config.dataset)
  if config.eval_episodes > 0:
    envs.require_env(env_id)
  validate.validate_dataset(ds, spec)  # dimensions against the environment
  data, sample_fn, obs_stats, reward_tf, comp = prepare_run(config, ds, spec, mesh)
  meta = {"env_id": env_id, "dataset": config.dataset,
          "obs_stats": obs_stats.to_dict() if obs_stats is not None else None,
          "reward_transform": reward_tf.to_dict()}
  if comp is not None:
    meta.update(comp.meta)
    _check_resume_generator(workdir, comp.meta)

  if workdir is not None and is_main:
    config_io.save_config(config, workdir)
    normalize.save_stats(os.path.join(workdir, "normalization.json"), obs_stats, reward_tf)

  agent_config = config.agent
  init_fn = lambda key: agent.init(key, spec, agent_config)
  update_fn = agent.update
  eval_fn = make_eval_fn(agent, config, env_id, obs_stats) if config.eval_episodes > 0 else None
  hooks = None
  if comp is not None:
    init_fn, update_fn, hooks = comp.wrap_init(init_fn), comp.wrap_update(update_fn), comp.hooks
    if eval_fn is not None:
      agent_eval = eval_fn
      eval_fn = lambda state, step: agent_eval(state.agent, step)
  state, last = run_training(
      cfg=LoopConfig.from_config(config), workdir=workdir,
      init_fn=init_fn, update_fn=update_fn, sample_fn=sample_fn, data=data, eval_fn=eval_fn,
      meta=meta, mesh=mesh, is_main=is_main, hooks=hooks)
  summary = {"env_id": env_id, "dataset": config.dataset, "agent": config.agent_name,
             "num_transitions": len(ds), "num_steps": config.num_steps,
             **{k: np.asarray(v).tolist() for k, v in last.items()}}
  aug_state = None
  if comp is not None:
    state, aug_state = state.agent, state.aug
    summary["augment"] = {
        "method": comp.settings.method, "mode": comp.settings.mode,
        "capacity": comp.settings.capacity,
        "generated_transitions": np.asarray(jax.device_get(aug_state.generated)).tolist(),
        "rounds": np.asarray(jax.device_get(aug_state.rounds)).tolist(),
        "evaluations_per_item": comp.settings.evaluations_per_item()}
  previous = os.path.join(workdir, "summary.json") if workdir is not None else ""
  if not last and previous and os.path.exists(previous):
    # Re-run of a finished run: nothing was trained or evaluated; keep its final metrics.
    with open(previous) as f:
      summary = {**json.load(f), **summary}
  if workdir is not None and is_main:
    atomic_write_text(os.path.join(workdir, "summary.json"), json.dumps(summary, indent=2))
  summary["state"] = state
  if aug_state is not None:
    summary["aug_state"] = aug_state
  return summary
