"""Online off-policy training (SAC and relatives) on a gymnasium environment, exactly resumable.

One env step = one host `env.step` and one jitted dispatch that (1) writes the transition into
the device replay buffer, (2) samples `utd_ratio * batch_size` transitions with a single
`sample_fn` call (swap it to mix in synthetic data, as ATraDiff does), (3) runs the agent's
update(s) and (4) returns the action for the next observation. Only the action comes back to
the host every step; metrics are fetched when logged.

Exact resume. The MuJoCo state cannot be checkpointed through gymnasium, but it is a
deterministic function of the episode's reset seed and actions: episode e is reset with
`episode_seed(config.seed, e)` and every checkpoint stores the actions taken so far in the
current episode. Resuming resets the env with that seed and replays the stored actions (at most
one episode, ~0.2 s), checks that it lands on the checkpointed observation, and continues with
the checkpointed pending action, replay buffer, agent state and PRNG key. So a checkpoint may
be taken at any env step, and a resumed run is bitwise the run that was not interrupted.

Random start steps: actions are drawn uniformly inside the jitted step from the run's key (not
from gymnasium's action-space RNG), so they too are reproduced on resume.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxaug import envs, faults
from jaxaug.agents import get_agent
from jaxaug.data import replay
from jaxaug.data.dataset import Transitions
from jaxaug.train import callbacks as callbacks_lib
from jaxaug.train.checkpoint import Checkpointer
from jaxaug.train import loop as loop_lib
from jaxaug.train.config_io import save_config
from jaxaug.train.logging import MetricLogger
from jaxaug.utils import atomic_write_text

SampleFn = Callable[[Any, jax.Array, int], Transitions]


def episode_seed(seed: int, episode: int) -> int:
  """The reset seed of episode `episode` of run `seed` (independent streams per episode)."""
  return int(np.random.SeedSequence([int(seed), int(episode)]).generate_state(1)[0])


def make_step_fn(agent, spec, batch_size: int, utd_ratio: int, sample_fn: SampleFn,
                 sample_with_aux: bool = False, reward_shift: float = 0.0):
  """The per-env-step work: `step(agent_state, buf, key, packed, random_action, aux=None,
  do_update=False) -> (agent_state, buf, key, action, metrics)`.

  Two jitted dispatches: an O(1) in-place write of the new row (buffer donated), then one fused
  sample + update(s) + act (state donated, buffer read-only). One fused dispatch for both was
  measured 10x slower at 1M rows: XLA cannot order the in-place write after the sampling gather
  of a donated buffer and copies the whole ring (~100 MB) every step, barrier or not.

  With `sample_with_aux`, sampling is `sample_fn(buf, key, n, aux)`, `aux` being the step's
  extra pytree argument (offline data, ATraDiff's synthetic buffer; see online_hooks).
  """
  obs_dim, act_dim = spec.obs_dim, spec.act_dim

  def unpack(packed):
    sizes = (obs_dim, act_dim, 1, obs_dim, 1, 1, obs_dim)
    parts, i = [], 0
    for n in sizes:
      parts.append(packed[i:i + n])
      i += n
    obs, action, reward, next_obs, terminal, timeout, acting_obs = parts
    transition = Transitions(observations=obs[None], actions=action[None], rewards=reward,
                             next_observations=next_obs[None], terminals=terminal,
                             timeouts=timeout)
    return transition, acting_obs

  def add(buf, packed):
    return replay.add(buf, unpack(packed)[0])  # one row: O(1) in place (see replay.add)

  def update_act(agent_state, buf, key, packed, random_action, aux, do_update: bool):
    _, acting_obs = unpack(packed)
    key, k_sample, k_update, k_act, k_rand = jax.random.split(key, 5)
    metrics = {}
    if do_update:
      if sample_with_aux:
        batch = sample_fn(buf, k_sample, batch_size * utd_ratio, aux)
      else:
        batch = sample_fn(buf, k_sample, batch_size * utd_ratio)
      if reward_shift:  # config.reward_shift: RLPD's AntMaze r - 1 on every sampled batch
        batch = batch.replace(rewards=batch.rewards + reward_shift)
      if utd_ratio == 1 or not hasattr(agent, "update_utd"):
        agent_state, metrics = agent.update(agent_state, batch, k_update)
      else:
        agent_state, metrics = agent.update_utd(agent_state, batch, k_update, utd_ratio)
    action = _next_action(agent_state, acting_obs, k_act, k_rand, random_action)
    return agent_state, key, action, metrics

  def _next_action(agent_state, obs, k_act, k_rand, random_action):
    policy = agent.act(agent_state, obs[None], k_act, deterministic=False)[0]
    uniform = jax.random.uniform(k_rand, (act_dim,), minval=-spec.max_action,
                                 maxval=spec.max_action)
    return jnp.where(random_action, uniform, policy)

  def first_action(agent_state, key, obs, random_action):
    key, k_act, k_rand = jax.random.split(key, 3)
    return key, _next_action(agent_state, obs, k_act, k_rand, random_action)

  add_jit = jax.jit(add, donate_argnums=(0,))
  update_act_jit = jax.jit(update_act, static_argnames=("do_update",), donate_argnums=(0,))

  def step(agent_state, buf, key, packed, random_action, aux=None, do_update: bool = False):
    packed = jnp.asarray(packed)  # one transfer, used by both dispatches
    buf = add_jit(buf, packed)
    agent_state, key, action, metrics = update_act_jit(agent_state, buf, key, packed,
                                                       random_action, aux, do_update=do_update)
    return agent_state, buf, key, action, metrics

  return step, jax.jit(first_action)


def pack_step(obs, action, reward, next_obs, terminal, timeout, acting_obs) -> np.ndarray:
  """One float32 vector per env step: a single host-to-device transfer."""
  return np.concatenate([np.asarray(obs, np.float32), np.asarray(action, np.float32),
                         np.float32([reward]), np.asarray(next_obs, np.float32),
                         np.float32([terminal]), np.float32([timeout]),
                         np.asarray(acting_obs, np.float32)])


def validate_online_config(config: ml_collections.ConfigDict) -> None:
  for name in ("num_env_steps", "batch_size", "replay_capacity", "utd_ratio", "eval_episodes",
               "log_every"):
    if int(config[name]) <= 0:
      raise ValueError(f"config.{name} must be positive, got {config[name]}")
  for name in ("start_steps", "eval_every", "checkpoint_every"):
    if int(config[name]) < 0:
      raise ValueError(f"config.{name} must be >= 0, got {config[name]}")


class EnvRunner:
  """The training environment and the host side of its episodes.

  Episode e is reset with `episode_seed(seed, e)`; the actions of the current episode are kept
  so that a resumed run can rebuild the simulator state by replaying them (`replay`).
  """

  def __init__(self, env_id: str, seed: int, act_dim: int):
    self.env = envs.make_env(env_id)
    self.seed = int(seed)
    self.max_len = int(self.env.spec.max_episode_steps or 1000)
    self.episode_index = 0
    self.actions = np.zeros((self.max_len, act_dim), np.float32)
    self.length = 0
    self.ret = 0.0
    self.recent_returns: list[float] = []
    self.since_log: list[float] = []  # returns of episodes finished since the last periodic log

  def reset(self) -> np.ndarray:
    obs, _ = self.env.reset(seed=episode_seed(self.seed, self.episode_index))
    self.actions[:] = 0.0
    self.length, self.ret = 0, 0.0
    return obs

  def replay(self, episode_index: int, actions: np.ndarray, length: int) -> np.ndarray:
    """Resume by replay: reset episode `episode_index` and retake its first `length` actions."""
    self.episode_index = int(episode_index)
    obs = self.reset()
    self.actions = np.array(actions, np.float32)
    for i in range(int(length)):
      obs, r, *_ = self.env.step(self.actions[i])
      self.ret += float(r)
    self.length = int(length)
    return obs

  def step(self, action: np.ndarray):
    """(next_obs, reward, terminated, truncated, acting_obs): acting_obs is the first
    observation of the next episode when this step ended one, else next_obs."""
    next_obs, reward, terminated, truncated, _ = self.env.step(action)
    self.actions[self.length] = action
    self.length += 1
    self.ret += float(reward)
    acting_obs = next_obs
    if terminated or truncated:
      self.recent_returns.append(self.ret)
      self.since_log.append(self.ret)
      self.episode_index += 1
      acting_obs = self.reset()
    return next_obs, reward, bool(terminated), bool(truncated), acting_obs

  def close(self) -> None:
    self.env.close()


def _callbacks_from_config(config, runner: EnvRunner, callbacks) -> list:
  callbacks = list(callbacks or [])
  if config.get("record_infos", False):  # the dataset builder's qpos/qvel per replay row
    callbacks.insert(0, callbacks_lib.RecordInfos.for_env(runner.env,
                                                          int(config.replay_capacity)))
  callbacks_lib.check_names(callbacks)
  return callbacks


def train_online(config: ml_collections.ConfigDict, workdir: str, *, agent=None,
                 callbacks: list[callbacks_lib.Callback] | None = None) -> dict:
  """Trains the config's agent online; resumes from `workdir`'s latest checkpoint.

  Args:
    config: see configs/sac.py (`agent_name` picks SAC, REDQ or RLPD; offline data and ATraDiff
      come from the config through jaxaug.augment.online_hooks).
    workdir: config.json, metrics.jsonl, tb/, checkpoints/, summary.json.
    agent: a module with the agent protocol (+ optional `update_utd`) replacing the config's
      (tests, custom agents).
    callbacks: host callbacks (jaxaug.train.callbacks): observe env steps and evaluations, and
      checkpoint their own state with the run.

  Returns:
    summary dict: steps, episodes, final/last eval, wall time, env steps/s.
  """
  validate_online_config(config)
  agent = agent or get_agent(config.get("agent_name") or "sac")
  env_id = envs.resolve_env_id(config.env_id)
  spec = envs.env_spec(env_id)
  runner = EnvRunner(env_id, config.seed, spec.act_dim)
  callbacks = _callbacks_from_config(config, runner, callbacks)
  os.makedirs(workdir, exist_ok=True)
  save_config(config, workdir)
  from jaxaug.augment import online_hooks  # pylint: disable=g-import-not-at-top
  extras = online_hooks.from_config(config, spec, workdir, runner.max_len, agent=agent)
  sample_fn = extras.sample_fn if extras is not None else replay.sample
  total = int(config.num_env_steps)
  capacity = int(config.replay_capacity)

  key = jax.random.key(int(config.seed))
  key, init_key = jax.random.split(key)
  agent_state = agent.init(init_key, spec, config.agent)
  buf = replay.init_buffer(spec.obs_dim, spec.act_dim, capacity)
  step_fn, first_action_fn = make_step_fn(agent, spec, int(config.batch_size),
                                          int(config.utd_ratio), sample_fn, extras is not None,
                                          reward_shift=float(config.get("reward_shift", 0.0)))

  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=config.max_checkpoints)
  latest = ckpt.latest_step()
  step, meta = 0, {}
  if latest is None:
    obs = runner.reset()
    key, action = first_action_fn(agent_state, key, jnp.asarray(obs, jnp.float32),
                                  config.start_steps > 0)
  else:  # resume by replay (module doc)
    target = _checkpoint_target(agent_state, buf, key, spec.act_dim, spec.obs_dim,
                                runner.max_len, callbacks)
    if extras is not None:
      target["extras"] = extras.state_dict()
    restored = ckpt.restore(latest, target)
    meta = ckpt.restore_meta(latest)
    agent_state, buf, key = restored["agent"], restored["buffer"], restored["key"]
    action = restored["action"]
    if extras is not None:
      extras.load_state_dict(restored["extras"])
    for cb in callbacks:
      if cb.name in restored["callbacks"]:
        cb.load_state_dict(restored["callbacks"][cb.name])
    step = int(meta["step"])
    runner.recent_returns = list(meta["recent_returns"])
    runner.since_log = list(meta.get("since_log", []))
    obs = runner.replay(int(meta["episode"]), restored["episode_actions"],
                        int(meta["episode_length"]))
    if not np.array_equal(np.asarray(obs, np.float32), np.asarray(restored["obs"], np.float32)):
      raise RuntimeError(f"{workdir}: replaying episode {runner.episode_index} did not reproduce "
                         "the checkpointed observation; the environment is not deterministic")
    logging.info("Resumed from step %d (episode %d, replayed %d env steps)", step,
                 runner.episode_index, runner.length)

  # resume_step 0 when nothing was checkpointed: records of a killed earlier attempt are dropped.
  logger = MetricLogger(workdir, total, resume_step=latest or 0)
  eval_key = jax.random.key(0)  # deterministic evaluation needs no randomness
  last_metrics: dict = {}
  # A finished run re-run (killed after its last checkpoint) reports the evaluation it logged.
  last_eval: dict = dict(meta.get("last_eval", {}))
  t0, step0 = time.time(), step

  def save(step_):
    _check_finite_metrics(last_metrics, step_, ckpt)  # a NaN/Inf loss is never checkpointed
    state = {"agent": agent_state, "buffer": buf, "key": key, "action": action,
             "obs": np.asarray(obs, np.float32), "episode_actions": runner.actions,
             "callbacks": _callback_states(callbacks)}
    if extras is not None:
      state["extras"] = extras.state_dict()
    faults.point("online.checkpoint")  # test-only kill point (jaxaug/faults.py)
    ckpt.save(step_, state, meta={
        "step": step_, "episode": runner.episode_index, "episode_length": runner.length,
        "recent_returns": runner.recent_returns[-10:], "since_log": runner.since_log,
        "last_eval": last_eval, "env_id": env_id, "seed": int(config.seed)})

  def run_eval(step_):
    # One small jitted call per env step on just the leaves `act` reads (envs.make_policy).
    res = envs.evaluate(envs.make_policy(agent.act, agent_state, eval_key), env_id,
                        int(config.eval_episodes), seed=10_000 + int(config.seed))
    out = {"eval/return": res["return_mean"], "eval/return_std": res["return_std"],
           "eval/normalized_score": res["normalized_score_mean"],
           "eval/length": res["length_mean"]}
    logger.log(step_, out)
    return out

  def log_train(step_):
    out = {f"train/{k}": v for k, v in last_metrics.items()}
    if runner.since_log:
      out["train/episode_return"] = float(np.mean(runner.since_log))
    out["train/env_steps_per_s"] = (step_ - step0) / max(time.time() - t0, 1e-9)
    if extras is not None:
      out.update(extras.metrics(real_size=min(step_, capacity)))
    if step_ % config.log_every == 0:  # (not at an end-of-run log: a resumed run goes on)
      runner.since_log = []
    logger.log(step_, out)

  # SIGTERM (e.g. `timeout`, a preemption notice): checkpoint at the next env step and return.
  # Checkpoints are exact at any step (see module doc), so nothing is lost.
  preempted = []
  previous_handler = None
  if threading.current_thread() is threading.main_thread():
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: preempted.append(True))
  while step < total:
    action_np = np.asarray(action)
    for cb in callbacks:
      cb.before_env_step(step, runner.env)
    next_obs, reward, terminated, truncated, acting_obs = runner.step(action_np)
    timeout = truncated and not terminated
    packed = pack_step(obs, action_np, reward, next_obs, terminated, timeout, acting_obs)
    agent_state, buf, key, action, metrics = step_fn(
        agent_state, buf, key, packed, step + 1 < config.start_steps,
        extras.aux if extras is not None else None, do_update=step >= config.start_steps)
    if extras is not None:  # between policy updates: ATraDiff's generation/adaptation rounds
      extras.after_step(step, next_obs, reward, terminated, truncated, agent_state, buf)
    if metrics:
      last_metrics = metrics
    obs = acting_obs
    step += 1

    if step % config.log_every == 0 or step == total:
      log_train(step)
    if (config.eval_every and step % config.eval_every == 0) or step == total:
      last_eval = run_eval(step)
      for cb in callbacks:
        cb.after_eval(step, agent_state, last_eval)
    if (config.checkpoint_every and step % config.checkpoint_every == 0) or step == total \
        or preempted:
      save(step)
    if preempted:
      logging.warning("SIGTERM: checkpointed step %d; re-run with the same workdir to resume",
                      step)
      break

  if previous_handler is not None:
    signal.signal(signal.SIGTERM, previous_handler)
  ckpt.close()
  logger.close()
  elapsed = time.time() - t0
  summary = {"env_id": env_id, "steps": step, "episodes": runner.episode_index,
             "preempted": bool(preempted), "last_eval": last_eval,
             "recent_train_returns": runner.recent_returns[-10:], "wall_time_s": elapsed,
             "env_steps_per_s": (step - step0) / max(elapsed, 1e-9)}
  if extras is not None:
    summary["extras"] = extras.metrics(real_size=min(step, capacity))
  atomic_write_text(os.path.join(workdir, "summary.json"), json.dumps(summary, indent=2))
  runner.close()
  return summary


def _check_finite_metrics(metrics: dict, step: int, ckpt: Checkpointer) -> None:
  """Stops the run, before its state is saved, when a training metric (loss) is NaN or Inf.

  Checked at every checkpoint: a diverged agent keeps producing non-finite losses, so the last
  checkpoint on disk stays the last good one.
  """
  loop_lib.raise_if_nonfinite(jax.device_get(dict(metrics)), f"env step {step}", ckpt)


def _checkpoint_target(agent_state, buf, key, act_dim, obs_dim, max_len, callbacks):
  return {"agent": agent_state, "buffer": buf, "key": key,
          "action": jnp.zeros((act_dim,), jnp.float32),
          "obs": np.zeros((obs_dim,), np.float32),
          "episode_actions": np.zeros((max_len, act_dim), np.float32),
          "callbacks": _callback_states(callbacks, template=True)}


def _callback_states(callbacks, template: bool = False) -> dict:
  """{name: state} of the callbacks that keep any (stateless ones are not in checkpoints, so a
  run re-run with another stateless callback, or without it, resumes)."""
  out = {}
  for cb in callbacks:
    d = cb.checkpoint_template() if template else cb.state_dict()
    if d:
      out[cb.name] = d
  return out


def load_run(workdir: str, config: ml_collections.ConfigDict, step: int | None = None,
             agent=None) -> dict:
  """A train_online checkpoint of `workdir` (latest unless `step`) as a dict: agent, buffer,
  key, step, meta, and `infos` (qpos/qvel per replay row) when config.record_infos."""
  agent = agent or get_agent(config.get("agent_name") or "sac")
  spec = envs.env_spec(config.env_id)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=None)
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise ValueError(f"{workdir}: no train_online checkpoint to load")
    runner = EnvRunner(spec.env_id, 0, spec.act_dim)
    callbacks = _callbacks_from_config(config, runner, None)
    runner.close()
    target = _checkpoint_target(agent.init(jax.random.key(0), spec, config.agent),
                                replay.init_buffer(spec.obs_dim, spec.act_dim,
                                                   int(config.replay_capacity)),
                                jax.random.key(0), spec.act_dim, spec.obs_dim, runner.max_len,
                                callbacks)
    restored = ckpt.restore(step, target)
    meta = ckpt.restore_meta(step)
  finally:
    ckpt.close()
  infos = restored["callbacks"].get(callbacks_lib.RecordInfos.name, {})
  return {**restored, "infos": {k: np.asarray(v) for k, v in infos.items()}, "step": step,
          "meta": meta}


def load_agent_state(workdir: str, config: ml_collections.ConfigDict, step: int | None = None,
                     agent=None):
  """(agent state, step) of a train_online checkpoint in `workdir` (latest unless `step`)."""
  run = load_run(workdir, config, step, agent)
  return run["agent"], run["step"]
