"""Online off-policy training (SAC, REDQ, RLPD, + ATraDiff) on gymnasium environments, exactly
resumable.

The loop carries one pytree (`jaxaug.train.online_state.LoopState`: agent state, replay buffer,
key, ATraDiff's state) through pure jitted functions (`OnlineFns`). One loop iteration steps
`num_envs` environments on the host (one action each), then dispatches (1) `store`: the rows,
one per env, into the device replay buffer, plus ATraDiff's store decisions, and (2)
`update_act`: num_envs x utd_ratio gradient steps on sampled minibatches (UTD counted per env
step, as in the references) and the next actions. Every `generation_interval` / `adapt_every`
env steps ATraDiff's rounds run as one more dispatch. Only the actions come back to the host;
metrics are fetched when logged.

`overlap=True` acts with the policy before the update instead (`act` then `update`, two
dispatches): the host gets the actions as soon as the previous update is done and steps the envs
while the device runs this one. Off by default: the references act with the updated policy.

Exact resume. The MuJoCo state cannot be checkpointed through gymnasium, but it is a
deterministic function of the episode's reset seed and actions: episode e of env i is reset with
`episode_seed(config.seed, e, i)` and every checkpoint stores the actions taken so far in each
env's current episode. Resuming resets each env with that seed and replays its actions (at most
one episode, ~0.2 s), checks that it lands on the checkpointed observation, and continues with
the checkpointed loop state (pending actions, buffers, agent, ATraDiff, key). So a checkpoint may
be taken at any loop iteration, and a resumed run is bitwise the run that was not interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxaug import envs, faults
from jaxaug.agents import get_agent
from jaxaug.data.loaders import load_dataset
from jaxaug.train import callbacks as callbacks_lib
from jaxaug.train.checkpoint import Checkpointer
from jaxaug.train import loop as loop_lib
from jaxaug.train.config_io import save_config
from jaxaug.train.logging import MetricLogger
from jaxaug.train.online_state import LoopData, LoopState, OnlineFns, unpack_rows
from jaxaug.types import EnvSpec
from jaxaug.utils import atomic_write_text

TIMINGS = ("env_s", "dispatch_s", "wait_s", "host_s", "eval_s", "checkpoint_s")


def episode_seed(seed: int, episode: int, env_index: int = 0) -> int:
  """The reset seed of episode `episode` of env `env_index` of run `seed` (independent streams
  per episode and env; env 0 keeps the single-env stream)."""
  entropy = [int(seed), int(episode)] + ([int(env_index)] if env_index else [])
  return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def pack_step(obs, action, reward, next_obs, terminal, timeout, acting_obs) -> np.ndarray:
  """One float32 vector per env step (layout: online_state.unpack_rows)."""
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
  n = int(config.get("num_envs", 1))
  if n <= 0:
    raise ValueError(f"config.num_envs must be positive, got {n}")
  if int(config.num_env_steps) % n:
    raise ValueError(f"config.num_env_steps ({config.num_env_steps}) must be a multiple of "
                     f"config.num_envs ({n}): every loop iteration steps every env once")
  if n > int(config.replay_capacity):
    raise ValueError(f"config.num_envs ({n}) exceeds config.replay_capacity "
                     f"({config.replay_capacity})")


class EnvRunner:
  """One training environment and the host side of its episodes.

  Episode e is reset with `episode_seed(seed, e, env_index)`; the actions of the current episode
  are kept so that a resumed run can rebuild the simulator state by replaying them (`replay`).
  """

  def __init__(self, env_id: str, seed: int, act_dim: int, env_index: int = 0):
    self.env = envs.make_env(env_id)
    self.seed = int(seed)
    self.env_index = int(env_index)
    self.max_len = int(self.env.spec.max_episode_steps or 1000)
    self.episode_index = 0
    self.actions = np.zeros((self.max_len, act_dim), np.float32)
    self.length = 0
    self.ret = 0.0

  def reset(self) -> np.ndarray:
    obs, _ = self.env.reset(seed=episode_seed(self.seed, self.episode_index, self.env_index))
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
    """(next_obs, reward, terminated, truncated, acting_obs, finished_return): acting_obs is the
    first observation of the next episode when this step ended one, else next_obs;
    finished_return the return of the episode this step ended (else None)."""
    next_obs, reward, terminated, truncated, _ = self.env.step(action)
    self.actions[self.length] = action
    self.length += 1
    self.ret += float(reward)
    acting_obs, finished = next_obs, None
    if terminated or truncated:
      finished = self.ret
      self.episode_index += 1
      acting_obs = self.reset()
    return next_obs, reward, bool(terminated), bool(truncated), acting_obs, finished

  def close(self) -> None:
    self.env.close()


class VecEnvRunner:
  """`num_envs` EnvRunners stepped in env order (gymnasium's vector envs reseed every sub-env at
  once on reset; resume by replay needs each env's own episode seeds, hence this)."""

  def __init__(self, env_id: str, seed: int, act_dim: int, num_envs: int):
    self.runners = [EnvRunner(env_id, seed, act_dim, i) for i in range(int(num_envs))]
    self.max_len = self.runners[0].max_len
    self.recent_returns: list[float] = []
    self.since_log: list[float] = []  # returns of episodes finished since the last periodic log

  @property
  def env(self):
    return self.runners[0].env

  @property
  def episodes(self) -> int:
    """Episodes finished over all envs."""
    return sum(r.episode_index for r in self.runners)

  def reset(self) -> np.ndarray:
    return np.stack([r.reset() for r in self.runners]).astype(np.float32)

  def step(self, actions: np.ndarray, obs: np.ndarray, step: int, callbacks) -> tuple:
    """Steps every env once: (packed rows (N, row_size), acting observations (N, obs_dim))."""
    rows, acting = [], []
    for i, r in enumerate(self.runners):
      for cb in callbacks:
        cb.before_env_step(step + i, r.env)
      next_obs, reward, terminated, truncated, acting_obs, finished = r.step(actions[i])
      if finished is not None:
        self.recent_returns.append(finished)
        self.recent_returns = self.recent_returns[-10:]
        self.since_log.append(finished)
      timeout = truncated and not terminated
      rows.append(pack_step(obs[i], actions[i], reward, next_obs, terminated, timeout,
                            acting_obs))
      acting.append(acting_obs)
    return np.stack(rows), np.stack(acting).astype(np.float32)

  def host_state(self) -> tuple[dict, dict]:
    """(arrays, json meta) of the episodes in progress, for checkpoints."""
    arrays = {"episode_actions": np.stack([r.actions for r in self.runners])}
    meta = {"episodes": [r.episode_index for r in self.runners],
            "episode_lengths": [r.length for r in self.runners],
            "recent_returns": self.recent_returns[-10:], "since_log": self.since_log}
    return arrays, meta

  def restore(self, arrays: dict, meta: dict) -> np.ndarray:
    """Resume by replay of every env's current episode; returns the observations reached."""
    self.recent_returns = list(meta["recent_returns"])
    self.since_log = list(meta.get("since_log", []))
    return np.stack([r.replay(e, a, n) for r, e, a, n in zip(
        self.runners, meta["episodes"], arrays["episode_actions"], meta["episode_lengths"])]
                    ).astype(np.float32)

  def close(self) -> None:
    for r in self.runners:
      r.close()


def _callbacks_from_config(config, env, callbacks) -> list:
  callbacks = list(callbacks or [])
  if config.get("record_infos", False):  # the dataset builder's qpos/qvel per replay row
    callbacks.insert(0, callbacks_lib.RecordInfos.for_env(env, int(config.replay_capacity)))
  callbacks_lib.check_names(callbacks)
  return callbacks


def _offline_transitions(config, spec: EnvSpec):
  ds = load_dataset(config.offline_dataset)
  if (ds.obs_dim, ds.act_dim) != (spec.obs_dim, spec.act_dim):
    raise ValueError(f"config.offline_dataset {config.offline_dataset!r} has obs/act dims "
                     f"{(ds.obs_dim, ds.act_dim)}, environment {spec.env_id} has "
                     f"{(spec.obs_dim, spec.act_dim)}")
  return ds.transitions()


def make_online(config: ml_collections.ConfigDict, spec: EnvSpec, workdir: str | None,
                agent=None, max_episode_len: int = 1000
                ) -> tuple[OnlineFns, LoopData, Any]:
  """The run's functions, read-only data and ATraDiff's initial state (or None), from the
  config: RLPD's offline share (`offline_dataset`, `offline_ratio`), ATraDiff
  (`atradiff.enabled`)."""
  agent = agent or get_agent(config.get("agent_name") or "sac")
  ratio = float(config.get("offline_ratio", 0.0) or 0.0)
  use_offline = ratio > 0 and bool(config.get("offline_dataset", ""))
  if ratio > 0 and not use_offline:
    raise ValueError("config.offline_ratio > 0 needs config.offline_dataset (a dataset spec)")
  num_envs = int(config.get("num_envs", 1))
  atd, aug_const, aug_state = None, None, None
  acfg = config.get("atradiff")
  if acfg is not None and acfg.get("enabled", False):
    from jaxaug.augment.atradiff import online as aonline  # heavy: only when used
    atd, aug_const = aonline.setup(config, spec, workdir, num_envs=num_envs,
                                   max_episode_len=max_episode_len, agent=agent)
    aug_state = atd.init(aug_const, aonline.state_key(int(config.seed)))
  fns = OnlineFns(agent=agent, spec=spec, num_envs=num_envs, batch_size=int(config.batch_size),
                  utd_ratio=int(config.utd_ratio), offline_ratio=ratio if use_offline else 0.0,
                  reward_shift=float(config.get("reward_shift", 0.0)), atradiff=atd,
                  replay_capacity=int(config.replay_capacity))
  data = LoopData(offline=_offline_transitions(config, spec) if use_offline else None,
                  aug=aug_const)
  return fns, data, aug_state


def _jitted(fns: OnlineFns):
  """The loop's dispatches. The state travels without its `action` (kept on the host side of
  the loop), so that donating the state never waits on, or invalidates, the actions."""
  spec = fns.spec

  def store(state, packed, first_step):
    return fns.store(state, unpack_rows(spec, packed)[0], first_step)

  def update_act(state, data, packed, random_action, do_update):
    state, metrics = fns.update_act(state, data, unpack_rows(spec, packed)[1], random_action,
                                    do_update)
    return state.replace(action=None), state.action, metrics

  def act(state, packed, random_action):
    return fns.act(state, unpack_rows(spec, packed)[1], random_action)

  def first_action(state, obs, random_action):
    state = fns.first_action(state, obs, random_action)
    return state.replace(action=None), state.action

  return {
      "store": jax.jit(store, donate_argnums=(0,)),
      "update_act": jax.jit(update_act, static_argnames=("do_update",), donate_argnums=(0,)),
      "update": jax.jit(fns.update, static_argnames=("do_update",), donate_argnums=(0,)),
      "act": jax.jit(act),
      "first_action": jax.jit(first_action),
      "augment_round": jax.jit(fns.augment_round, static_argnames=("generation", "adaptation"),
                               donate_argnums=(0,)),
  }


def train_online(config: ml_collections.ConfigDict, workdir: str, *, agent=None,
                 callbacks: list[callbacks_lib.Callback] | None = None) -> dict:
  """Trains the config's agent online; resumes from `workdir`'s latest checkpoint.

  Args:
    config: see configs/sac.py (`agent_name` picks SAC, REDQ or RLPD; `num_envs`, `overlap`;
      offline data and ATraDiff come from the config, see `make_online`).
    workdir: config.json, metrics.jsonl, tb/, checkpoints/, summary.json.
    agent: a module with the agent protocol (+ optional `update_utd`) replacing the config's
      (tests, custom agents).
    callbacks: host callbacks (jaxaug.train.callbacks): observe env steps and evaluations, and
      checkpoint their own state with the run.

  Returns:
    summary dict: steps, episodes, final/last eval, wall time, env steps/s, timings (seconds in
    env stepping, dispatching, waiting for actions, host bookkeeping, evaluation, checkpoints).
  """
  validate_online_config(config)
  agent = agent or get_agent(config.get("agent_name") or "sac")
  env_id = envs.resolve_env_id(config.env_id)
  spec = envs.env_spec(env_id)
  num_envs = int(config.get("num_envs", 1))
  overlap = bool(config.get("overlap", False))
  runner = VecEnvRunner(env_id, config.seed, spec.act_dim, num_envs)
  callbacks = _callbacks_from_config(config, runner.env, callbacks)
  os.makedirs(workdir, exist_ok=True)
  save_config(config, workdir)
  fns, data, aug_state = make_online(config, spec, workdir, agent, runner.max_len)
  atd = fns.atradiff
  jits = _jitted(fns)
  total = int(config.num_env_steps)
  capacity = int(config.replay_capacity)
  start_steps = int(config.start_steps)

  state = fns.init(jax.random.key(int(config.seed)), config.agent, aug_state)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=config.max_checkpoints)
  latest = ckpt.latest_step()
  step, meta = 0, {}
  if latest is None:
    obs = runner.reset()
    state, action = jits["first_action"](state, jnp.asarray(obs), start_steps > 0)
  else:  # resume by replay (module doc)
    target = _checkpoint_target(state, spec, runner, callbacks)
    restored = ckpt.restore(latest, target)
    meta = ckpt.restore_meta(latest)
    state, action = restored["state"].replace(action=None), restored["state"].action
    for cb in callbacks:
      if cb.name in restored["callbacks"]:
        cb.load_state_dict(restored["callbacks"][cb.name])
    step = int(meta["step"])
    obs = runner.restore(restored, meta)
    if not np.array_equal(obs, np.asarray(restored["obs"], np.float32)):
      raise RuntimeError(f"{workdir}: replaying the current episodes did not reproduce the "
                         "checkpointed observations; the environment is not deterministic")
    logging.info("Resumed from step %d (episodes %s, replayed %s env steps)", step,
                 meta["episodes"], meta["episode_lengths"])
  state = state.replace(action=None)

  # resume_step 0 when nothing was checkpointed: records of a killed earlier attempt are dropped.
  logger = MetricLogger(workdir, total, resume_step=latest or 0)
  eval_key = jax.random.key(0)  # deterministic evaluation needs no randomness
  last_metrics: dict = {}
  # A finished run re-run (killed after its last checkpoint) reports the evaluation it logged.
  last_eval: dict = dict(meta.get("last_eval", {}))
  timings = dict.fromkeys(TIMINGS, 0.0)
  t0, step0 = time.time(), step

  def save(step_):
    _check_finite_metrics(last_metrics, step_, ckpt)  # a NaN/Inf loss is never checkpointed
    arrays, host_meta = runner.host_state()
    payload = {"state": state.replace(action=action), "obs": np.asarray(obs, np.float32),
               "callbacks": _callback_states(callbacks), **arrays}
    faults.point("online.checkpoint")  # test-only kill point (jaxaug/faults.py)
    ckpt.save(step_, payload, meta={"step": step_, **host_meta, "last_eval": last_eval,
                                    "env_id": env_id, "seed": int(config.seed),
                                    "num_envs": num_envs})

  def run_eval(step_):
    # One small jitted call per env step on just the leaves `act` reads (envs.make_policy).
    res = envs.evaluate(envs.make_policy(agent.act, state.agent, eval_key), env_id,
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
    if atd is not None:
      out.update(atd.metrics(state.aug, real_size=min(step_, capacity)))
    if crossed(step_, int(config.log_every)):  # (not at an end-of-run log: a run goes on)
      runner.since_log = []
    logger.log(step_, out)

  def crossed(done, every):  # a multiple of `every` lies in (done - num_envs, done]
    return bool(every) and done // every != (done - num_envs) // every

  # SIGTERM (e.g. `timeout`, a preemption notice): checkpoint at the next iteration and return.
  # Checkpoints are exact at any iteration (see module doc), so nothing is lost.
  preempted = []
  previous_handler = None
  if threading.current_thread() is threading.main_thread():
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: preempted.append(True))
  clock = time.perf_counter
  while step < total:
    t_a = clock()
    action_np = np.asarray(action)  # waits for the dispatch that computes it
    t_b = clock()
    packed, obs = runner.step(action_np, obs, step, callbacks)
    t_c = clock()
    packed = jnp.asarray(packed)  # one transfer, used by both dispatches
    do_update = step >= start_steps
    random_action = step + num_envs < start_steps
    state = jits["store"](state, packed, np.int32(step))
    if overlap:  # act with the policy before this update; the env steps while it runs
      action = jits["act"](state, packed, random_action)
      state, metrics = jits["update"](state, data, do_update=do_update)
    else:
      state, action, metrics = jits["update_act"](state, data, packed, random_action,
                                                  do_update=do_update)
    step += num_envs
    if atd is not None:
      generation, adaptation = atd.rounds_due(step, num_envs)
      if generation or adaptation:  # between policy updates, as Algorithm 1
        state = jits["augment_round"](state, data, generation=generation,
                                      adaptation=adaptation)
    t_d = clock()
    if metrics:
      last_metrics = metrics

    if crossed(step, int(config.log_every)) or step == total:
      log_train(step)
    t_e = clock()
    if crossed(step, int(config.eval_every)) or step == total:
      last_eval = run_eval(step)
      for cb in callbacks:
        cb.after_eval(step, state.agent, last_eval)
    t_f = clock()
    if crossed(step, int(config.checkpoint_every)) or step == total or preempted:
      save(step)
    t_g = clock()
    timings["wait_s"] += t_b - t_a
    timings["env_s"] += t_c - t_b
    timings["dispatch_s"] += t_d - t_c
    timings["host_s"] += t_e - t_d
    timings["eval_s"] += t_f - t_e
    timings["checkpoint_s"] += t_g - t_f
    if preempted:
      logging.warning("SIGTERM: checkpointed step %d; re-run with the same workdir to resume",
                      step)
      break

  if previous_handler is not None:
    signal.signal(signal.SIGTERM, previous_handler)
  ckpt.close()
  logger.close()
  elapsed = time.time() - t0
  summary = {"env_id": env_id, "steps": step, "episodes": runner.episodes,
             "num_envs": num_envs, "overlap": overlap,
             "preempted": bool(preempted), "last_eval": last_eval,
             "recent_train_returns": runner.recent_returns[-10:], "wall_time_s": elapsed,
             "env_steps_per_s": (step - step0) / max(elapsed, 1e-9),
             "timings": {**timings, "steps": step - step0}}
  if atd is not None:
    summary["extras"] = atd.metrics(state.aug, real_size=min(step, capacity))
  atomic_write_text(os.path.join(workdir, "summary.json"), json.dumps(summary, indent=2))
  runner.close()
  return summary


def _check_finite_metrics(metrics: dict, step: int, ckpt: Checkpointer) -> None:
  """Stops the run, before its state is saved, when a training metric (loss) is NaN or Inf.

  Checked at every checkpoint: a diverged agent keeps producing non-finite losses, so the last
  checkpoint on disk stays the last good one.
  """
  loop_lib.raise_if_nonfinite(jax.device_get(dict(metrics)), f"env step {step}", ckpt)


def _checkpoint_target(state: LoopState, spec: EnvSpec, runner: VecEnvRunner, callbacks):
  n = len(runner.runners)
  return {"state": state.replace(action=jnp.zeros((n, spec.act_dim), jnp.float32)),
          "obs": np.zeros((n, spec.obs_dim), np.float32),
          "episode_actions": np.zeros((n, runner.max_len, spec.act_dim), np.float32),
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
  key, step, meta, and `infos` (qpos/qvel per replay row) when config.record_infos. Runs
  without ATraDiff only (an ATraDiff state needs its diffuser to restore)."""
  agent = agent or get_agent(config.get("agent_name") or "sac")
  spec = envs.env_spec(config.env_id)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=None)
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise ValueError(f"{workdir}: no train_online checkpoint to load")
    runner = VecEnvRunner(spec.env_id, 0, spec.act_dim, int(config.get("num_envs", 1)))
    callbacks = _callbacks_from_config(config, runner.env, None)
    runner.close()
    fns = OnlineFns(agent=agent, spec=spec, num_envs=len(runner.runners),
                    replay_capacity=int(config.replay_capacity))
    target = _checkpoint_target(fns.init(jax.random.key(0), config.agent), spec, runner,
                                callbacks)
    restored = ckpt.restore(step, target)
    meta = ckpt.restore_meta(step)
  finally:
    ckpt.close()
  infos = restored["callbacks"].get(callbacks_lib.RecordInfos.name, {})
  st = restored["state"]
  return {**restored, "agent": st.agent, "buffer": st.buffer, "key": st.key,
          "infos": {k: np.asarray(v) for k, v in infos.items()}, "step": step, "meta": meta}


def load_agent_state(workdir: str, config: ml_collections.ConfigDict, step: int | None = None,
                     agent=None):
  """(agent state, step) of a train_online checkpoint in `workdir` (latest unless `step`)."""
  run = load_run(workdir, config, step, agent)
  return run["agent"], run["step"]
