"""D4RL-style datasets built locally from policies jaxaug trains itself (issue: dataset builder).

Kinds, with D4RL's meanings (Fu et al. 2020, Sec. 5):
  random          a uniformly random policy;
  medium          a SAC policy stopped early, at ~1/3 of expert performance (by default the
                  first evaluation reaching a normalised score of 33.3, i.e. 1/3 of D4RL's
                  expert reference return);
  medium-replay   every transition in SAC's replay buffer while it trained up to that medium
                  policy (in order, with the true qpos/qvel);
  expert          the fully trained SAC policy;
  medium-expert   medium and expert concatenated.
Rollouts of medium/expert sample the stochastic SAC policy, as D4RL's data collection did.

Layout of OUT (everything resumable: the SAC run checkpoints; a finished dataset or policy is
written under a temporary name and renamed, and is skipped when it already exists):
  OUT/<env>/sac/                 train_online workdir (checkpoints, metrics.jsonl, config.json)
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
from jaxaug import envs
from jaxaug.agents import sac
from jaxaug.data.dataset import OfflineDataset
from jaxaug.data.loaders import load_dataset, save_d4rl_hdf5, save_minari
from jaxaug.data.validate import validate_dataset
from jaxaug.train import online
from jaxaug.train.checkpoint import Checkpointer

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
  medium_score: float = 100.0 / 3.0  # normalised eval score at which 'medium' is taken
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
  import importlib.util  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(jaxaug.__file__))),
                      "configs", "sac.py")
  if not os.path.exists(path):
    raise ValueError(f"{path}: configs/sac.py not found; run from a jaxaug checkout")
  spec = importlib.util.spec_from_file_location("jaxaug_configs_sac", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


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
      node = node[p]
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
  out = {"observations": np.zeros((n, spec.obs_dim), np.float32),
         "actions": np.zeros((n, spec.act_dim), np.float32),
         "rewards": np.zeros(n, np.float32),
         "next_observations": np.zeros((n, spec.obs_dim), np.float32),
         "terminals": np.zeros(n, np.float32), "timeouts": np.zeros(n, np.float32)}
  qpos = np.zeros((n, model.nq), np.float64)
  qvel = np.zeros((n, model.nv), np.float64)
  episode = 0
  obs, _ = env.reset(seed=online.episode_seed(seed, episode))
  for t in range(n):
    action = np.asarray(policy(obs, t), np.float32)
    qpos[t] = env.unwrapped.data.qpos
    qvel[t] = env.unwrapped.data.qvel
    next_obs, reward, terminated, truncated, _ = env.step(action)
    out["observations"][t] = obs
    out["actions"][t] = action
    out["rewards"][t] = reward
    out["next_observations"][t] = next_obs
    out["terminals"][t] = float(terminated)
    out["timeouts"][t] = float(truncated and not terminated)
    obs = next_obs
    if terminated or truncated:
      episode += 1
      obs, _ = env.reset(seed=online.episode_seed(seed, episode))
  if n and not (out["terminals"][-1] or out["timeouts"][-1]):
    out["timeouts"][-1] = 1.0
  env.close()
  return OfflineDataset(**out, infos={"qpos": qpos, "qvel": qvel})


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
  r = ds.episode_returns()
  full = r if len(r) < 2 else r  # the last episode may be cut; reported as is
  return {"transitions": len(ds), "episodes": int(len(r)),
          "return_mean": float(np.mean(full)), "return_std": float(np.std(full)),
          "return_min": float(np.min(full)), "return_max": float(np.max(full)),
          "normalized_score_mean": float(np.mean(envs.normalized_score(env_id, full)))}


def _write(ds: OfflineDataset, opts: BuildOptions, kind: str) -> dict:
  env_id = envs.resolve_env_id(opts.env_id)
  ds.metadata.update(_stats(ds, env_id))
  validate_dataset(ds, envs.env_spec(env_id))
  path = dataset_path(opts, kind)
  save_d4rl_hdf5(ds, path)
  if opts.minari:
    save_minari(ds, path[:-len(".hdf5")] + ".minari", env_id,
                dataset_id=ds.metadata["dataset_id"], overwrite=True)
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


def _eval_info(workdir: str) -> dict:
  with open(os.path.join(workdir, "summary.json")) as f:
    summary = json.load(f)
  return {"sac_steps": summary["steps"], "eval": summary["last_eval"]}


class Preempted(Exception):
  """The SAC run checkpointed on SIGTERM; re-running the same command resumes it."""


def _exit_if_preempted(summary: dict) -> None:
  if summary.get("preempted"):
    raise Preempted(f"SAC run preempted at step {summary['steps']}; re-run to resume")


def train_medium(opts: BuildOptions):
  """SAC up to the medium score; saves the medium policy and returns (state, meta)."""
  loaded = load_policy(opts, "medium")
  if loaded is not None:
    return loaded
  config = sac_config(opts)
  workdir = os.path.join(opts.out, SHORT_NAMES[config.env_id], "sac")
  summary = online.train_online(config, workdir, stop_at_normalized_score=opts.medium_score)
  _exit_if_preempted(summary)
  if not summary["stopped_early"]:
    raise RuntimeError(f"SAC on {config.env_id} did not reach the medium score "
                       f"{opts.medium_score} within --sac_steps={opts.sac_steps}; raise it")
  run = online.load_run(workdir, config)
  info = {**_eval_info(workdir), "medium_score_target": opts.medium_score}
  save_policy(opts, "medium", run["agent"], run["step"], info)
  _maybe_write_medium_replay(opts, run)
  return load_policy(opts, "medium")


def _maybe_write_medium_replay(opts: BuildOptions, run: dict) -> None:
  if "medium-replay" not in opts.kinds or os.path.exists(dataset_path(opts, "medium-replay")):
    return
  n = int(run["step"])
  capacity = int(run["buffer"].capacity)
  if n > capacity:
    raise RuntimeError(f"medium reached after {n} steps but the replay holds {capacity}")
  data = jax.tree.map(lambda x: np.asarray(x[:n]), run["buffer"].data)
  ds = OfflineDataset(observations=data.observations, actions=data.actions,
                      rewards=data.rewards, next_observations=data.next_observations,
                      terminals=data.terminals, timeouts=data.timeouts,
                      infos={k: np.asarray(v[:n]) for k, v in run["infos"].items()})
  ds.metadata.update(_base_metadata(opts, "medium-replay"))
  ds.metadata.update({"policy": "SAC replay buffer up to the medium policy",
                      "sac_steps": n, "medium_score_target": opts.medium_score})
  _write(ds, opts, "medium-replay")


def train_expert(opts: BuildOptions):
  loaded = load_policy(opts, "expert")
  if loaded is not None:
    return loaded
  train_medium(opts)  # the expert run continues the medium run (same workdir)
  config = sac_config(opts)
  workdir = os.path.join(opts.out, SHORT_NAMES[config.env_id], "sac")
  _exit_if_preempted(online.train_online(config, workdir))
  state, step = online.load_agent_state(workdir, config)
  save_policy(opts, "expert", state, step, _eval_info(workdir))
  return load_policy(opts, "expert")


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
    state, meta = train_medium(opts) if kind == "medium" else train_expert(opts)
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
      train_medium(opts)  # writes it
      if not os.path.exists(path):  # medium policy existed but the file did not
        raise RuntimeError(f"{path}: the SAC run went past medium before medium-replay was "
                           "written; delete OUT/<env>/policies/medium to rebuild it")
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
  with open(os.path.join(opts.out, f"{SHORT_NAMES[env_id]}-build.json"), "w") as f:
    json.dump(results, f, indent=2)
  return results


def command_line() -> str:
  return " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable)] + sys.argv)
