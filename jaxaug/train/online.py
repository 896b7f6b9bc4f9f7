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
from jaxaug.train import mesh as mesh_lib
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
  """The training envs of one or more runs (points), `num_envs` each, stepped in order, point
  major (env i of point p is number p * num_envs + i). gymnasium's vector envs reseed every
  sub-env at once on reset; resume by replay needs each env's own episode seeds, hence this."""

  def __init__(self, env_id: str, seeds, act_dim: int, num_envs: int):
    seeds = [int(seeds)] if np.ndim(seeds) == 0 else [int(x) for x in seeds]
    self.num_points, self.num_envs = len(seeds), int(num_envs)
    self.runners = [EnvRunner(env_id, s, act_dim, i) for s in seeds for i in range(num_envs)]
    self.max_len = self.runners[0].max_len
    self.recent_returns: list[list[float]] = [[] for _ in seeds]  # per point, last 10
    self.since_log: list[list[float]] = [[] for _ in seeds]  # per point, since the last log

  @property
  def env(self):
    return self.runners[0].env

  def episodes(self, point: int = 0) -> int:
    """Episodes finished over the point's envs."""
    n = self.num_envs
    return sum(r.episode_index for r in self.runners[point * n:(point + 1) * n])

  def reset(self) -> np.ndarray:
    return np.stack([r.reset() for r in self.runners]).astype(np.float32)

  def step(self, actions: np.ndarray, obs: np.ndarray, step: int, callbacks) -> tuple:
    """Steps every env once: (packed rows (envs, row_size), acting observations (envs, obs))."""
    rows, acting = [], []
    for j, r in enumerate(self.runners):
      for cb in callbacks:
        cb.before_env_step(step + j, r.env)
      next_obs, reward, terminated, truncated, acting_obs, finished = r.step(actions[j])
      if finished is not None:
        p = j // self.num_envs
        self.recent_returns[p] = (self.recent_returns[p] + [finished])[-10:]
        self.since_log[p].append(finished)
      timeout = truncated and not terminated
      rows.append(pack_step(obs[j], actions[j], reward, next_obs, terminated, timeout,
                            acting_obs))
      acting.append(acting_obs)
    return np.stack(rows), np.stack(acting).astype(np.float32)

  def host_state(self) -> tuple[dict, dict]:
    """(arrays, json meta) of the episodes in progress, for checkpoints."""
    arrays = {"episode_actions": np.stack([r.actions for r in self.runners])}
    meta = {"episodes": [r.episode_index for r in self.runners],
            "episode_lengths": [r.length for r in self.runners],
            "recent_returns": self.recent_returns, "since_log": self.since_log}
    return arrays, meta

  def restore(self, arrays: dict, meta: dict) -> np.ndarray:
    """Resume by replay of every env's current episode; returns the observations reached."""
    self.recent_returns = [list(x) for x in meta["recent_returns"]]
    self.since_log = [list(x) for x in meta["since_log"]]
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


def _jitted(fns: OnlineFns, stacked: bool = False):
  """The loop's dispatches. The state travels without its `action` (kept on the host side of
  the loop), so that donating the state never waits on, or invalidates, the actions. With
  `stacked`, every function maps over a leading axis of points (a sweep: state, rows and
  actions per point; data, the env step and the static flags shared)."""
  spec = fns.spec
  pmap = (lambda f, in_axes: jax.vmap(f, in_axes=in_axes)) if stacked else (lambda f, _: f)

  def store(state, packed, first_step):
    return pmap(lambda s, p: fns.store(s, unpack_rows(spec, p)[0], first_step), (0, 0))(
        state, packed)

  def update_act(state, data, packed, random_action, do_update):
    def one(s, p):
      s, metrics = fns.update_act(s, data, unpack_rows(spec, p)[1], random_action, do_update)
      return s.replace(action=None), s.action, metrics
    return pmap(one, (0, 0))(state, packed)

  def update(state, data, do_update):
    return pmap(lambda s: fns.update(s, data, do_update), (0,))(state)

  def act(state, packed, random_action):
    return pmap(lambda s, p: fns.act(s, unpack_rows(spec, p)[1], random_action), (0, 0))(
        state, packed)

  def first_action(state, obs, random_action):
    def one(s, o):
      s = fns.first_action(s, o, random_action)
      return s.replace(action=None), s.action
    return pmap(one, (0, 0))(state, obs)

  def augment_round(state, data, generation, adaptation):
    return pmap(lambda s: fns.augment_round(s, data, generation, adaptation), (0,))(state)

  return {
      "store": jax.jit(store, donate_argnums=(0,)),
      "update_act": jax.jit(update_act, static_argnames=("do_update",), donate_argnums=(0,)),
      "update": jax.jit(update, static_argnames=("do_update",), donate_argnums=(0,)),
      "act": jax.jit(act),
      "first_action": jax.jit(first_action),
      "augment_round": jax.jit(augment_round, static_argnames=("generation", "adaptation"),
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
  return _train([config], [workdir], workdir, agent=agent, callbacks=callbacks)[0]


def train_online_points(configs: list[ml_collections.ConfigDict], point_dirs: list[str],
                        run_dir: str, *, mesh=None, agent=None) -> list[dict]:
  """Trains several runs (points of a sweep: the same config up to `seed` and the agent's float
  hyperparameters) as ONE program: the loop state gets a leading point axis (sharded over the
  `sweep` axis of `mesh`, jaxaug.train.mesh.make_sweep_mesh), every function is vmapped over
  it, and each point steps its own `num_envs` envs with its own seed. Each point's directory
  gets the files of a single run (config.json, metrics.jsonl, summary.json); the checkpoints of
  the whole program are in run_dir/checkpoints (one unit: an exact resume continues them all).
  Point p's results equal a separate train_online run of configs[p] up to float rounding (the
  vmapped update may sum in another order), which the envs then amplify over long runs."""
  for c in configs:
    acfg = c.get("atradiff")
    if acfg is not None and acfg.get("enabled", False):
      raise ValueError("online sweeps do not support ATraDiff (config.atradiff.enabled): run "
                       "its points as separate train_online runs")
    if c.get("record_infos", False):
      raise ValueError("online sweeps do not support config.record_infos")
  return _train(configs, point_dirs, run_dir, agent=agent, stacked=True, mesh=mesh)


def _train(configs, dirs, run_dir, *, agent=None, callbacks=None, stacked=False, mesh=None
           ) -> list[dict]:
  """train_online (one point, not stacked) and train_online_points (stacked points)."""
  for c in configs:
    validate_online_config(c)
  c0, num_points = configs[0], len(configs)
  agent = agent or get_agent(c0.get("agent_name") or "sac")
  env_id = envs.resolve_env_id(c0.env_id)
  spec = envs.env_spec(env_id)
  num_envs = int(c0.get("num_envs", 1))
  overlap = bool(c0.get("overlap", False))
  runner = VecEnvRunner(env_id, [c.seed for c in configs], spec.act_dim, num_envs)
  if stacked and callbacks:
    raise ValueError("host callbacks are for single runs, not for stacked points")
  callbacks = _callbacks_from_config(c0, runner.env, callbacks)
  for c, d in zip(configs, dirs):
    os.makedirs(d, exist_ok=True)
    save_config(c, d)
  fns, data, aug_state = make_online(c0, spec, dirs[0], agent, runner.max_len)
  atd = fns.atradiff
  jits = _jitted(fns, stacked)
  total = int(c0.num_env_steps)
  capacity = int(c0.replay_capacity)
  start_steps = int(c0.start_steps)

  def per_point(tree, p):
    return jax.tree.map(lambda x: x[p], tree) if stacked else tree

  states = [fns.init(jax.random.key(int(c.seed)), c.agent, aug_state) for c in configs]
  if stacked:
    mesh = mesh if mesh is not None else mesh_lib.make_sweep_mesh(1)
    place = lambda tree: mesh_lib.shard_sweep(tree, mesh)
    state = place(jax.tree.map(lambda *xs: jnp.stack(xs), *states))
  else:
    place = lambda tree: tree
    state = states[0]
  shape_envs = lambda x: x.reshape((num_points, num_envs) + x.shape[1:]) if stacked else x
  ckpt = Checkpointer(os.path.join(run_dir, "checkpoints"), max_to_keep=c0.max_checkpoints)
  latest = ckpt.latest_step()
  step, meta = 0, {}
  if latest is None:
    obs = runner.reset()
    state, action = jits["first_action"](state, shape_envs(jnp.asarray(obs)), start_steps > 0)
  else:  # resume by replay (module doc)
    target = _checkpoint_target(state, spec, runner, callbacks, num_points if stacked else 0)
    restored = ckpt.restore(latest, target)
    meta = ckpt.restore_meta(latest)
    state = place(restored["state"].replace(action=None))
    action = place(restored["state"].action)
    for cb in callbacks:
      if cb.name in restored["callbacks"]:
        cb.load_state_dict(restored["callbacks"][cb.name])
    step = int(meta["step"])
    obs = runner.restore(restored, meta)
    if not np.array_equal(obs, np.asarray(restored["obs"], np.float32)):
      raise RuntimeError(f"{run_dir}: replaying the current episodes did not reproduce the "
                         "checkpointed observations; the environment is not deterministic")
    logging.info("Resumed from step %d (episodes %s, replayed %s env steps)", step,
                 meta["episodes"], meta["episode_lengths"])
  state = state.replace(action=None)
  # The per-step dispatches carry only what they read: ATraDiff's round-only state (generator
  # parameters, optimiser states, importance buffers) and its read-only diffuser stay out of
  # them (every jitted call pays per argument leaf: with them, ~15 ms per env step).
  state, cold = _split_cold(fns, state)
  data_step = data.replace(aug=None)
  if atd is not None:  # compile the generation round at setup, not in the middle of the run
    jits["augment_round"].lower(_merge_cold(state, cold), data, generation=True,
                                adaptation=False).compile()

  # resume_step 0 when nothing was checkpointed: records of a killed earlier attempt are dropped.
  loggers = [MetricLogger(d, total, resume_step=latest or 0) for d in dirs]
  eval_key = jax.random.key(0)  # deterministic evaluation needs no randomness
  last_metrics: dict = {}
  # A finished run re-run (killed after its last checkpoint) reports the evaluation it logged.
  last_evals: list = list(meta.get("last_evals", [{}] * num_points))
  timings = dict.fromkeys(TIMINGS, 0.0)
  t0, step0 = time.time(), step

  # (one function object for the whole run: make_policy caches its compiled act per function)
  stacked_act = _stacked_act(agent.act, num_points) if stacked else None

  def host_agents():
    agents = mesh_lib.gather_to_host(state.agent, mesh) if stacked else state.agent
    return [per_point(agents, p) for p in range(num_points)]

  def save(step_):
    _check_finite_metrics(last_metrics, step_, ckpt)  # a NaN/Inf loss is never checkpointed
    arrays, host_meta = runner.host_state()
    payload = {"state": _merge_cold(state, cold).replace(action=action),
               "obs": np.asarray(obs, np.float32),
               "callbacks": _callback_states(callbacks), **arrays}
    faults.point("online.checkpoint")  # test-only kill point (jaxaug/faults.py)
    ckpt.save(step_, payload, meta={"step": step_, **host_meta, "last_evals": last_evals,
                                    "env_id": env_id, "seeds": [int(c.seed) for c in configs],
                                    "num_envs": num_envs})

  def run_eval(step_):
    # One small jitted call per env step on just the leaves `act` reads (envs.make_policy);
    # stacked points: every point's episodes in ONE vector env, acting with a vmapped policy.
    seeds = [10_000 + int(c.seed) for c in configs]
    if stacked:
      agents = mesh_lib.gather_to_host(state.agent, mesh)
      results = envs.evaluate_groups(envs.make_policy(stacked_act, agents, eval_key),
                                     env_id, int(c0.eval_episodes), seeds)
    else:
      results = [envs.evaluate(envs.make_policy(agent.act, state.agent, eval_key), env_id,
                               int(c0.eval_episodes), seed=seeds[0])]
    out = []
    for p, res in enumerate(results):
      rec = {"eval/return": res["return_mean"], "eval/return_std": res["return_std"],
             "eval/normalized_score": res["normalized_score_mean"],
             "eval/length": res["length_mean"]}
      loggers[p].log(step_, rec)
      out.append(rec)
    return out

  def log_train(step_):
    host = jax.device_get(dict(last_metrics))
    for p in range(num_points):
      out = {f"train/{k}": v for k, v in per_point(host, p).items()}
      if runner.since_log[p]:
        out["train/episode_return"] = float(np.mean(runner.since_log[p]))
      out["train/env_steps_per_s"] = (step_ - step0) / max(time.time() - t0, 1e-9)
      if atd is not None:
        out.update(atd.metrics(state.aug, real_size=min(step_, capacity)))
      if c0.get("log_timings", False):
        out.update({f"timings/{k}": v for k, v in timings.items()})
      if crossed(step_, int(c0.log_every)):  # (not at an end-of-run log: a run goes on)
        runner.since_log[p] = []
      loggers[p].log(step_, out)

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
    action_np = np.asarray(action).reshape(-1, spec.act_dim)  # waits for its dispatch
    t_b = clock()
    packed, obs = runner.step(action_np, obs, step, callbacks)
    t_c = clock()
    packed = shape_envs(jnp.asarray(packed))  # one transfer, used by both dispatches
    do_update = step >= start_steps
    random_action = step + num_envs < start_steps
    # (the agent's leaves stay out of the store dispatch: it does not read them)
    state = jits["store"](state.replace(agent=None), packed, np.int32(step)).replace(
        agent=state.agent)
    if overlap:  # act with the policy before this update; the env steps while it runs
      action = jits["act"](state, packed, random_action)
      state, metrics = jits["update"](state, data_step, do_update=do_update)
    else:
      state, action, metrics = jits["update_act"](state, data_step, packed, random_action,
                                                  do_update=do_update)
    step += num_envs
    if atd is not None:
      generation, adaptation = atd.rounds_due(step, num_envs)
      if generation or adaptation:  # between policy updates, as Algorithm 1
        state, cold = _split_cold(fns, jits["augment_round"](
            _merge_cold(state, cold), data, generation=generation, adaptation=adaptation))
    t_d = clock()
    timings["wait_s"] += t_b - t_a
    timings["env_s"] += t_c - t_b
    timings["dispatch_s"] += t_d - t_c
    if metrics:
      last_metrics = metrics

    if crossed(step, int(c0.log_every)) or step == total:
      log_train(step)
    t_e = clock()
    if crossed(step, int(c0.eval_every)) or step == total:
      last_evals = run_eval(step)
      if callbacks:
        agent_now = host_agents()[0]
        for cb in callbacks:
          cb.after_eval(step, agent_now, last_evals[0])
    t_f = clock()
    if crossed(step, int(c0.checkpoint_every)) or step == total or preempted:
      save(step)
    t_g = clock()
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
  for lg in loggers:
    lg.close()
  elapsed = time.time() - t0
  summaries = []
  for p, (c, d) in enumerate(zip(configs, dirs)):
    summary = {"env_id": env_id, "steps": step, "episodes": runner.episodes(p),
               "num_envs": num_envs, "overlap": overlap, "preempted": bool(preempted),
               "last_eval": last_evals[p], **last_evals[p],  # (also top level: sweep_report)
               "recent_train_returns": runner.recent_returns[p],
               "wall_time_s": elapsed,
               "env_steps_per_s": (step - step0) * num_points / max(elapsed, 1e-9),
               "timings": {**timings, "steps": (step - step0) * num_points}}
    if atd is not None:
      summary["extras"] = atd.metrics(state.aug, real_size=min(step, capacity))
    atomic_write_text(os.path.join(d, "summary.json"), json.dumps(summary, indent=2))
    summaries.append(summary)
  runner.close()
  return summaries


def _stacked_act(act, num_points: int):
  """`act` of stacked agent states (leading point axis) on group-major observations
  (num_points * n, obs_dim) -> (num_points * n, act_dim): point p acts on its own rows."""
  def fn(state, obs, key, deterministic=True):
    obs = obs.reshape((num_points, -1) + obs.shape[1:])
    a = jax.vmap(lambda s, o: act(s, o, key, deterministic=deterministic))(state, obs)
    return a.reshape((-1,) + a.shape[2:])
  return fn


def _split_cold(fns: OnlineFns, state: LoopState) -> tuple[LoopState, dict | None]:
  """(state without ATraDiff's round-only fields, those fields); (state, None) without it."""
  if fns.atradiff is None:
    return state, None
  names = fns.atradiff.round_only_fields
  cold = {n: getattr(state.aug, n) for n in names}
  return state.replace(aug=state.aug.replace(**dict.fromkeys(names))), cold


def _merge_cold(state: LoopState, cold: dict | None) -> LoopState:
  return state if cold is None else state.replace(aug=state.aug.replace(**cold))


def _check_finite_metrics(metrics: dict, step: int, ckpt: Checkpointer) -> None:
  """Stops the run, before its state is saved, when a training metric (loss) is NaN or Inf.

  Checked at every checkpoint: a diverged agent keeps producing non-finite losses, so the last
  checkpoint on disk stays the last good one.
  """
  loop_lib.raise_if_nonfinite(jax.device_get(dict(metrics)), f"env step {step}", ckpt)


def _checkpoint_target(state: LoopState, spec: EnvSpec, runner: VecEnvRunner, callbacks,
                       num_points: int = 0):
  """What a checkpoint holds; `num_points` > 0: the state has a leading axis of points."""
  n = len(runner.runners)
  action_shape = (num_points, runner.num_envs) if num_points else (n,)
  return {"state": state.replace(action=jnp.zeros(action_shape + (spec.act_dim,), jnp.float32)),
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
