"""D4RL-style datasets built locally from policies jaxaug trains itself (issue: dataset builder).

Kinds, with D4RL's meanings (Fu et al. 2020, Sec. 5):
  random          a uniformly random policy;
  medium          a SAC policy at ~1/3 of expert performance: the first of the SAC run's
                  evaluation snapshots whose return reaches 1/3 of the expert's (the last
                  snapshot's) evaluation return (--medium_fraction), or a given normalised
                  score (--medium_score);
  medium-replay   every transition in SAC's replay buffer while it trained up to that medium
                  policy (in order, with the true qpos/qvel);
  expert          the trained SAC policy: the snapshot with the best evaluation return
                  (--expert=best, default) or the last one (--expert=last);
  medium-expert   medium and expert concatenated.
One SAC run serves all: it keeps a policy snapshot at every evaluation, so medium is chosen
after the fact relative to the expert it produced, and medium-replay is a prefix of its replay.
Rollouts of medium/expert sample the stochastic SAC policy, as D4RL's data collection did.

Layout of OUT (everything resumable: the SAC run checkpoints; a finished dataset or policy is
written under a temporary name and renamed, and is skipped when it already exists):
  OUT/<env>/sac/                 train_online workdir (checkpoints, metrics.jsonl, config.json)
  OUT/<env>/sac/policy_snapshots orbax: the SAC agent state at every evaluation step
  OUT/<env>/policies/<name>/     orbax: the SAC agent state of the medium / expert policy
  OUT/<env>-<kind>.hdf5          D4RL hdf5 layout (read by the `d4rl:` loader)
  OUT/<env>-<kind>.minari/       optional Minari dataset directory
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

import jaxaug
from jaxaug import envs, faults
from jaxaug.agents import sac
from jaxaug.data.dataset import OfflineDataset
from jaxaug.data.loaders import load_dataset, save_d4rl_hdf5, save_minari
from jaxaug.data.validate import validate_dataset
from jaxaug.train import callbacks as callbacks_lib
from jaxaug.train import online
from jaxaug.train.checkpoint import Checkpointer
from jaxaug.utils import atomic_write_text

KINDS = ("random", "medium", "medium-replay", "expert", "medium-expert")
SHORT_NAMES = {"Hopper-v5": "hopper", "HalfCheetah-v5": "halfcheetah",
               "Walker2d-v5": "walker2d", "Ant-v5": "ant"}


@dataclasses.dataclass(frozen=True)
class BuildOptions:
  env_id: str
  out: str
  kinds: tuple[str, ...] = KINDS
  size: int = 1_000_000  # transitions of random / medium / expert (medium-expert: 2x)
  seed: int = 0
  sac_preset: str = ""  # configs/sac.py preset; '' = the env's own
  sac_steps: int = 1_000_000  # env steps of the SAC run that produces the expert
  medium_fraction: float = 1.0 / 3.0  # medium = first eval reaching this x expert's return
  medium_score: float | None = None  # or: first eval reaching this normalised score
  expert: str = "best"  # 'best' (highest-return snapshot) or 'last' snapshot of the SAC run
  eval_every: int = 5000  # SAC evaluation period (the medium stop is checked there)
  checkpoint_every: int = 25_000
  sac_overrides: tuple[tuple[str, object], ...] = ()  # extra (field, value) config overrides
  minari: bool = False
  command: str = ""  # the generating command, stored in metadata

  def validate(self) -> None:
    bad = [k for k in self.kinds if k not in KINDS]
    if bad or not self.kinds:
      raise ValueError(f"--kinds: unknown kind(s) {bad}; expected a comma-separated subset of "
                       f"{','.join(KINDS)}")
    if self.size <= 0 or self.sac_steps <= 0:
      raise ValueError(f"--size and --sac_steps must be positive, got {self.size}, "
                       f"{self.sac_steps}")


def load_sac_configs():
  """configs/sac.py of this checkout (presets live with the other experiment configs)."""
  from jaxaug.configs_io import load_config_module  # pylint: disable=g-import-not-at-top
  return load_config_module("sac")


def sac_config(opts: BuildOptions) -> ml_collections.ConfigDict:
  """The SAC run's config: the env preset + what the builder needs (infos, medium stop)."""
  env_id = envs.resolve_env_id(opts.env_id)
  config = load_sac_configs().get_config(opts.sac_preset or SHORT_NAMES[env_id])
  config.env_id = env_id
  config.seed = opts.seed
  config.num_env_steps = opts.sac_steps
  config.replay_capacity = min(opts.sac_steps, 1_000_000)
  config.record_infos = True  # medium-replay needs qpos/qvel of every replay row
  config.eval_every = opts.eval_every
  config.checkpoint_every = opts.checkpoint_every
  for dotted, value in opts.sac_overrides:
    *parents, leaf = dotted.split(".")
    node = config
    for p in parents:
      node = node[p] if p in node else None
      if not isinstance(node, ml_collections.ConfigDict):
        break
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      raise ValueError(f"--sac_set={dotted}=...: the SAC config has no field '{dotted}'")
    node[leaf] = value
  return config


def dataset_path(opts: BuildOptions, kind: str) -> str:
  return os.path.join(opts.out, f"{SHORT_NAMES[envs.resolve_env_id(opts.env_id)]}-{kind}.hdf5")


def _base_metadata(opts: BuildOptions, kind: str) -> dict:
  env_id = envs.resolve_env_id(opts.env_id)
  return {"env_id": env_id, "kind": kind,
          "dataset_id": f"jaxaug/{SHORT_NAMES[env_id]}-{kind}-v0", "seed": opts.seed,
          "command": opts.command, "jaxaug_version": jaxaug.__version__,
          "generator": "jaxaug.data.builder",
          "reference_scores": "D4RL locomotion references applied to the v5 environments",
          "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def collect(policy: Callable[[np.ndarray, int], np.ndarray], env_id: str, num_transitions: int,
            seed: int) -> OfflineDataset:
  """Rolls `policy(obs, t) -> action` for exactly `num_transitions` env steps.

  Episode e is reset with online.episode_seed(seed, e). infos/qpos and infos/qvel hold the
  simulator state *before* each step (D4RL's convention). The last, cut, episode is closed by a
  timeout on the final row.
  """
  env = envs.make_env(env_id)
  spec = envs.env_spec(env_id)
  n = int(num_transitions)
  model = env.unwrapped.model
  qpos = np.zeros((n, model.nq), np.float64)
  qvel = np.zeros((n, model.nv), np.float64)

  def record(t, info):  # the state the action is taken in
    del info
    qpos[t] = env.unwrapped.data.qpos
    qvel[t] = env.unwrapped.data.qvel

  out = _rollout(env, policy, n, seed, spec.obs_dim, spec.act_dim, record)
  env.close()
  return OfflineDataset(**out, infos={"qpos": qpos, "qvel": qvel})


def _rollout(env, policy, n: int, seed: int, obs_dim: int, act_dim: int, record) -> dict:
  """Exactly n steps of `policy(obs, t)` in `env`, D4RL keys as float32 arrays. Episode e is
  reset with online.episode_seed(seed, e); `record(t, info)` runs before step t (info: the
  last reset/step info); the cut last episode ends in a timeout."""
  out = {"observations": np.zeros((n, obs_dim), np.float32),
         "actions": np.zeros((n, act_dim), np.float32),
         "rewards": np.zeros(n, np.float32),
         "next_observations": np.zeros((n, obs_dim), np.float32),
         "terminals": np.zeros(n, np.float32), "timeouts": np.zeros(n, np.float32)}
  episode = 0
  obs, info = env.reset(seed=online.episode_seed(seed, episode))
  for t in range(n):
    action = np.asarray(policy(obs, t), np.float32)
    record(t, info)
    next_obs, reward, terminated, truncated, info = env.step(action)
    out["observations"][t] = obs
    out["actions"][t] = action
    out["rewards"][t] = reward
    out["next_observations"][t] = next_obs
    out["terminals"][t] = float(terminated)
    out["timeouts"][t] = float(truncated and not terminated)
    obs = next_obs
    if terminated or truncated:
      episode += 1
      obs, info = env.reset(seed=online.episode_seed(seed, episode))
  if n and not (out["terminals"][-1] or out["timeouts"][-1]):
    out["timeouts"][-1] = 1.0
  return out


def random_policy(act_dim: int, seed: int, max_action: float = 1.0):
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0xA11]))
  return lambda obs, t: rng.uniform(-max_action, max_action, act_dim)


_act_sample = jax.jit(lambda s, o, k: sac.act(s, o[None], k, deterministic=False)[0])


def sac_policy(state, seed: int):
  """The stochastic SAC policy; step t uses fold_in(key(seed), t)."""
  key = jax.random.key(seed)
  return lambda obs, t: np.asarray(_act_sample(state, jnp.asarray(obs, jnp.float32),
                                               jax.random.fold_in(key, t)))


def _stats(ds: OfflineDataset, env_id: str) -> dict:
  full = ds.episode_returns()  # every episode, the last (cut) one included
  return {"transitions": len(ds), "episodes": int(len(full)),
          "return_mean": float(np.mean(full)), "return_std": float(np.std(full)),
          "return_min": float(np.min(full)), "return_max": float(np.max(full)),
          "normalized_score_mean": float(np.mean(envs.normalized_score(env_id, full)))}


def _write(ds: OfflineDataset, opts: BuildOptions, kind: str) -> dict:
  env_id = envs.resolve_env_id(opts.env_id)
  ds.metadata.update(_stats(ds, env_id))
  validate_dataset(ds, envs.env_spec(env_id))
  path = dataset_path(opts, kind)
  # The hdf5 goes last: its existence marks the kind as done (a re-run skips it), so a kill
  # between the two writes must not leave the Minari copy unwritten for good.
  if opts.minari:
    save_minari(ds, path[:-len(".hdf5")] + ".minari", env_id,
                dataset_id=ds.metadata["dataset_id"], overwrite=True)
  faults.point("dataset.write")  # test-only kill point (jaxaug/faults.py)
  save_d4rl_hdf5(ds, path)
  logging.info("wrote %s: %s", path, json.dumps(_stats(ds, env_id)))
  return _stats(ds, env_id)


# ------------------------------------------------------------------------------------ policies

def _policy_dir(opts: BuildOptions, name: str) -> str:
  return os.path.join(opts.out, SHORT_NAMES[envs.resolve_env_id(opts.env_id)], "policies", name)


def save_policy(opts: BuildOptions, name: str, state, step: int, info: dict) -> None:
  ckpt = Checkpointer(_policy_dir(opts, name), max_to_keep=1)
  ckpt.save(step, {"agent": state}, meta={"step": step, **info,
                                          "sac_config": sac_config(opts).to_dict()})
  ckpt.close()


def load_policy(opts: BuildOptions, name: str):
  """(SAC state, meta) of a saved policy, or None when not saved yet."""
  directory = _policy_dir(opts, name)
  if not os.path.isdir(directory):
    return None
  ckpt = Checkpointer(directory, max_to_keep=1)
  step = ckpt.latest_step()
  if step is None:
    ckpt.close()
    return None
  config = sac_config(opts)
  template = sac.init(jax.random.key(0), envs.env_spec(config.env_id), config.agent)
  state = ckpt.restore(step, {"agent": template})["agent"]
  meta = ckpt.restore_meta(step)
  ckpt.close()
  return state, meta


class Preempted(Exception):
  """The SAC run checkpointed on SIGTERM; re-running the same command resumes it."""


def _exit_if_preempted(summary: dict) -> None:
  if summary.get("preempted"):
    raise Preempted(f"SAC run preempted at step {summary['steps']}; re-run to resume")


def _sac_dir(opts: BuildOptions) -> str:
  return os.path.join(opts.out, SHORT_NAMES[envs.resolve_env_id(opts.env_id)], "sac")


def _snapshot_dir(opts: BuildOptions) -> str:
  return os.path.join(_sac_dir(opts), "policy_snapshots")


def train_sac(opts: BuildOptions) -> None:
  """Runs (or resumes) the SAC run to --sac_steps, snapshotting the policy at every evaluation.

  The snapshots let 'medium' be chosen after the run, relative to the expert it produced.
  Raises Preempted when SIGTERM stopped the run (it checkpointed; re-run to resume).
  """
  config = sac_config(opts)
  snapshots = PolicySnapshots(_snapshot_dir(opts))
  try:
    summary = online.train_online(config, _sac_dir(opts), callbacks=[snapshots])
  finally:
    snapshots.close()
  _exit_if_preempted(summary)


class PolicySnapshots(callbacks_lib.Callback):
  """Saves the agent after every evaluation (with its metrics) into its own checkpoint folder.

  Its record is the folder itself, so it checkpoints nothing with the run: a resumed run
  re-evaluates steps after its checkpoint and finds them already saved.
  """

  name = "policy_snapshots"

  def __init__(self, directory: str):
    self.snapshots = Checkpointer(directory, max_to_keep=None)
    self.done = set(self.snapshots.all_steps())

  def after_eval(self, step, agent_state, metrics) -> None:
    if step not in self.done:
      self.snapshots.save(step, {"agent": agent_state}, meta={"step": step, "eval": metrics})
      self.done.add(step)

  def close(self) -> None:
    self.snapshots.close()


def snapshot_evals(opts: BuildOptions) -> dict[int, dict]:
  """{eval step: eval metrics} of the policy snapshots, up to the run's last step."""
  snapshots = Checkpointer(_snapshot_dir(opts), max_to_keep=None)
  try:
    return {s: snapshots.restore_meta(s)["eval"] for s in sorted(snapshots.all_steps())
            if s <= opts.sac_steps}
  finally:
    snapshots.close()


def select_policies(opts: BuildOptions) -> dict[str, int]:
  """expert = the best (highest eval return; or, with --expert=last, the last) snapshot;
  medium = the first snapshot reaching `medium_fraction` of the expert's evaluation return
  (D4RL: ~1/3 of expert), or --medium_score when given.

  'best' by default: SAC's evaluation return on Hopper swings by 2-3x between neighbouring
  evaluations before convergence, and a run cut short by the compute budget may end on a dip.
  """
  evals = snapshot_evals(opts)
  if not evals:
    raise RuntimeError(f"{_snapshot_dir(opts)}: no policy snapshots; the SAC run evaluated "
                       "nothing (is --eval_every > --sac_steps?)")
  if opts.expert == "last":
    expert = max(evals)
  elif opts.expert == "best":
    expert = max(evals, key=lambda s: (evals[s]["eval/return"], s))
  else:
    raise ValueError(f"--expert must be 'best' or 'last', got {opts.expert!r}")
  if opts.medium_score is not None:
    ok = [s for s, e in evals.items() if e["eval/normalized_score"] >= opts.medium_score]
    rule = f"first eval with normalized score >= {opts.medium_score}"
  else:
    target = opts.medium_fraction * evals[expert]["eval/return"]
    ok = [s for s, e in evals.items() if e["eval/return"] >= target]
    rule = f"first eval with return >= {opts.medium_fraction:.3f} x expert's"
  if not ok:
    raise RuntimeError(f"no SAC snapshot satisfies the medium rule ({rule}); train longer")
  return {"expert": expert, "medium": min(ok), "rule": rule,
          "expert_rule": f"{opts.expert} snapshot"}


def _policy(opts: BuildOptions, name: str):
  """(state, meta) of the medium or expert policy; saved to OUT/<env>/policies/<name> once."""
  loaded = load_policy(opts, name)
  if loaded is not None:
    return loaded
  train_sac(opts)
  chosen = select_policies(opts)
  step = chosen[name]
  config = sac_config(opts)
  template = sac.init(jax.random.key(0), envs.env_spec(config.env_id), config.agent)
  snapshots = Checkpointer(_snapshot_dir(opts), max_to_keep=None)
  state = snapshots.restore(step, {"agent": template})["agent"]
  meta = snapshots.restore_meta(step)
  snapshots.close()
  save_policy(opts, name, state, step, {"sac_steps": step, "eval": meta["eval"],
                                        "selection": chosen["rule"] if name == "medium"
                                        else chosen["expert_rule"]})
  return load_policy(opts, name)


def write_medium_replay(opts: BuildOptions) -> None:
  """Every transition of the SAC replay up to the medium policy's step, in order, with infos."""
  _, meta = _policy(opts, "medium")
  n = int(meta["step"])
  run = online.load_run(_sac_dir(opts), sac_config(opts))
  capacity = int(run["buffer"].capacity)
  if run["step"] > capacity:
    raise RuntimeError(f"the SAC run took {run['step']} steps but its replay holds {capacity}: "
                       "the first transitions were overwritten (raise replay_capacity)")
  data = jax.tree.map(lambda x: np.asarray(x[:n]), run["buffer"].data)
  ds = OfflineDataset(observations=data.observations, actions=data.actions,
                      rewards=data.rewards, next_observations=data.next_observations,
                      terminals=data.terminals, timeouts=data.timeouts,
                      infos={k: np.asarray(v[:n]) for k, v in run["infos"].items()})
  ds.metadata.update(_base_metadata(opts, "medium-replay"))
  ds.metadata.update({"policy": "SAC replay buffer up to the medium policy", "sac_steps": n,
                      "medium_policy_eval": meta.get("eval"),
                      "medium_selection": meta.get("selection")})
  _write(ds, opts, "medium-replay")


# ------------------------------------------------------------------------------------- driver

def _rollout_dataset(opts: BuildOptions, kind: str) -> OfflineDataset:
  """random / medium / expert: loaded if already written, else collected (not written)."""
  path = dataset_path(opts, kind)
  env_id = envs.resolve_env_id(opts.env_id)
  if os.path.exists(path):
    return load_dataset(f"d4rl:{path}")
  spec = envs.env_spec(env_id)
  seed_offset = {"random": 1, "medium": 2, "expert": 3}[kind]
  rollout_seed = 1_000_003 * (opts.seed + 1) + seed_offset
  if kind == "random":
    policy, info = random_policy(spec.act_dim, rollout_seed, spec.max_action), {
        "policy": "uniform random"}
  else:
    state, meta = _policy(opts, kind)
    policy = sac_policy(state, rollout_seed)
    info = {"policy": f"SAC {kind} (stochastic)", "policy_sac_steps": meta.get("sac_steps"),
            "policy_eval": meta.get("eval"), "policy_dir": _policy_dir(opts, kind)}
  ds = collect(policy, env_id, opts.size, rollout_seed)
  ds.metadata.update(_base_metadata(opts, kind))
  ds.metadata.update(info)
  ds.metadata["rollout_seed"] = rollout_seed
  return ds


def build(opts: BuildOptions) -> dict[str, dict]:
  """Builds every requested kind (skipping finished files); returns each dataset's statistics."""
  opts.validate()
  os.makedirs(opts.out, exist_ok=True)
  env_id = envs.resolve_env_id(opts.env_id)
  results = {}
  order = [k for k in KINDS if k in opts.kinds]
  for kind in order:
    path = dataset_path(opts, kind)
    t0 = time.time()
    if os.path.exists(path):
      logging.info("%s exists; skipped", path)
    elif kind == "medium-replay":
      write_medium_replay(opts)
    elif kind == "medium-expert":
      parts = [_rollout_dataset(opts, "medium"), _rollout_dataset(opts, "expert")]
      ds = OfflineDataset.concatenate(parts, source=path)
      ds.metadata = {**_base_metadata(opts, kind), "policy": "medium + expert",
                     "parts": [{k: p.metadata.get(k) for k in ("dataset_id", "policy",
                                                             "policy_sac_steps", "policy_eval",
                                                             "rollout_seed")} for p in parts]}
      _write(ds, opts, kind)
    else:
      _write(_rollout_dataset(opts, kind), opts, kind)
    ds = load_dataset(f"d4rl:{path}")
    results[kind] = {**_stats(ds, env_id), "path": path, "seconds": time.time() - t0}
  atomic_write_text(os.path.join(opts.out, f"{SHORT_NAMES[env_id]}-build.json"),
                    json.dumps(results, indent=2))
  return results


def command_line() -> str:
  return " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable)] + sys.argv)


# ------------------------------------------------------------------------ suites (not D4RL data)
#
# Small D4RL-layout files for the suites (AntMaze, Maze2D, FrankaKitchen, Adroit, Meta-World),
# for tests and the CPU path: they exercise loading, training and evaluation end to end. They
# are NOT D4RL's data (D4RL's maze data come from long goal-switching runs of a trained
# controller, Adroit's from human demonstrations): do not compare scores on them with papers'.

SUITE_POLICIES = ("scripted", "random")
# Maze2D waypoint controller gains (D4RL's own collection controller used the same form:
# a = kp (waypoint - position) - kd velocity).
_MAZE_KP, _MAZE_KD = 10.0, 1.0


def maze2d_waypoint_policy(env_id: str, noise: float, seed: int):
  """A PD controller that follows the shortest cell path (BFS on the D4RL map) to the goal, in
  D4RL's frame (qpos = (row, column) - 0.2, cell (i, j) centred at (i - 0.2, j - 0.2))."""
  from collections import deque
  from jaxaug.envs.suites.specs import suite_env
  rows = suite_env(env_id).maze
  goal = next((i, j) for i, r in enumerate(rows) for j, c in enumerate(r) if c == "G")
  # Distance to the goal of every free cell (BFS from the goal), 4-connected.
  dist = {goal: 0}
  queue = deque([goal])
  while queue:
    i, j = queue.popleft()
    for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
      c = (i + di, j + dj)
      if rows[c[0]][c[1]] != "#" and c not in dist:
        dist[c] = dist[(i, j)] + 1
        queue.append(c)
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0x3A2E]))

  def policy(obs, t):
    pos, vel = np.asarray(obs[:2], np.float64), np.asarray(obs[2:4], np.float64)
    cell = (int(np.rint(pos[0] + 0.2)), int(np.rint(pos[1] + 0.2)))
    if cell == goal or cell not in dist:
      target = np.array(goal, np.float64)  # D4RL's goal point is (row, column) itself
    else:
      nxt = min(((cell[0] + di, cell[1] + dj) for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1))),
                key=lambda c: dist.get(c, 1 << 30))
      target = np.array(nxt, np.float64) - 0.2
    a = _MAZE_KP * (target - pos) - _MAZE_KD * vel + noise * rng.normal(size=2)
    return np.clip(a, -1.0, 1.0)

  return policy


# Tasks whose scripted expert does not follow metaworld's usual class-name pattern.
_METAWORLD_POLICY_NAMES = {"peg-insert-side": "SawyerPegInsertionSideV3Policy"}


def metaworld_scripted_policy(env_id: str, noise: float, seed: int):
  """Meta-World's own scripted expert for the task (metaworld.policies), plus Gaussian noise."""
  import metaworld.policies as mw_policies
  from jaxaug.envs.suites.specs import metaworld_task
  task = metaworld_task(env_id)
  name = _METAWORLD_POLICY_NAMES.get(
      task, "Sawyer" + "".join(p.capitalize() for p in task.split("-")) + "V3Policy")
  if not hasattr(mw_policies, name):
    raise ValueError(f"--suite_policy=scripted: metaworld has no scripted policy {name} for "
                     f"{task!r}; use --suite_policy=random")
  expert = getattr(mw_policies, name)()
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0x3E7A]))
  return lambda obs, t: np.clip(expert.get_action(np.asarray(obs, np.float64))
                                + noise * rng.normal(size=4), -1.0, 1.0)


def suite_policy(env_id: str, kind: str, seed: int, noise: float = 0.3):
  """The collection policy of a suite dataset: 'scripted' (Maze2D waypoints, Meta-World's
  experts) or 'random' (uniform actions; the only choice for AntMaze, Kitchen, Adroit)."""
  from jaxaug.envs.suites.specs import suite_env
  suite = suite_env(env_id).suite
  if kind not in SUITE_POLICIES:
    raise ValueError(f"--suite_policy must be one of {SUITE_POLICIES}, got {kind!r}")
  if kind == "scripted" and suite == "maze2d":
    return maze2d_waypoint_policy(env_id, noise, seed)
  if kind == "scripted" and suite == "metaworld":
    return metaworld_scripted_policy(env_id, noise, seed)
  if kind == "scripted":
    raise ValueError(f"--suite_policy=scripted exists for maze2d and Meta-World only; {env_id} "
                     "({suite}) has none: use --suite_policy=random")
  return random_policy(envs.env_spec(env_id).act_dim, seed)


def collect_suite(policy, env_id: str, num_transitions: int, seed: int) -> OfflineDataset:
  """Rolls `policy(obs, t)` in the D4RL-layout suite env for exactly `num_transitions` steps
  (episode e reset with online.episode_seed(seed, e); the cut last episode ends in a timeout).
  AntMaze files also get infos/goal (the episode's goal in D4RL's frame, as D4RL's files)."""
  env = envs.make_env(env_id)
  spec = envs.env_spec(env_id)
  n = int(num_transitions)
  goals = np.zeros((n, 2), np.float32)

  def record(t, info):  # the episode's goal, reported by the env's reset/step infos
    goals[t] = info.get("goal", np.zeros(2))

  out = _rollout(env, policy, n, seed, spec.obs_dim, spec.act_dim, record)
  env.close()
  infos = {"goal": goals} if envs.resolve_env_id(env_id).startswith("antmaze") else {}
  return OfflineDataset(**out, infos=infos)


def suite_dataset_path(out: str, name: str) -> str:
  return os.path.join(out, f"{os.path.basename(name)}.hdf5")


def build_suite_dataset(name: str, out: str, size: int, seed: int = 0,
                        policy: str = "scripted", noise: float = 0.3, command: str = ""
                        ) -> dict:
  """Writes OUT/<name>.hdf5 in the D4RL layout of `name`'s suite (e.g. 'antmaze-umaze-v2', so
  a preset's --config.data_dir=OUT finds it); returns its statistics. Not D4RL's data."""
  env_id = envs.resolve_env_id(name)
  from jaxaug.envs.suites.specs import is_suite_env
  if not is_suite_env(env_id):
    raise ValueError(f"--env={name!r} is not a suite dataset (AntMaze, Maze2D, Kitchen, Adroit, "
                     "Meta-World); locomotion datasets are built with --kinds")
  if size <= 0:
    raise ValueError(f"--size must be positive, got {size}")
  envs.require_env(env_id)
  os.makedirs(out, exist_ok=True)
  t0 = time.time()
  ds = collect_suite(suite_policy(env_id, policy, seed, noise), env_id, size, seed)
  returns = ds.episode_returns()
  stats = {"transitions": len(ds), "episodes": int(len(returns)),
           "return_mean": float(np.mean(returns)),
           "terminals": int(ds.terminals.sum())}
  if not envs.scored_by_success(env_id):
    stats["normalized_score_mean"] = float(np.mean(envs.normalized_score(env_id, returns)))
  ds.metadata = {"env_id": env_id, "dataset_id": f"jaxaug/{os.path.basename(name)}",
                 "policy": policy, "noise": noise if policy == "scripted" else None,
                 "seed": seed, "command": command, "jaxaug_version": jaxaug.__version__,
                 "generator": "jaxaug.data.builder.build_suite_dataset",
                 "note": "small built dataset in the D4RL layout; NOT D4RL's data",
                 "observation_layout": envs.observation_layout(env_id), **stats}
  validate_dataset(ds, envs.env_spec(env_id))
  path = suite_dataset_path(out, name)
  save_d4rl_hdf5(ds, path)
  stats.update(path=path, seconds=time.time() - t0)
  logging.info("wrote %s: %s", path, json.dumps(stats))
  return stats
