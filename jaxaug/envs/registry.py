"""gymnasium environment factory, name resolution and D4RL reference scores.

jaxaug evaluates on the gymnasium MuJoCo v5 environments. D4RL's datasets were collected on the
v2 environments of gym 0.x; the v5 dynamics are the same MuJoCo models, so we apply D4RL's
reference returns (the random- and expert-policy returns D4RL normalises with) to the v5
environments unchanged. Scores are therefore *D4RL-referenced*, not D4RL-identical.

The other suites of the papers (AntMaze, Maze2D, FrankaKitchen, Adroit, Meta-World) live in
jaxaug/envs/suites: their names resolve here too ('antmaze-medium-play-v2' -> 'antmaze-medium',
'pen-human-v1' -> 'AdroitHandPen-v1', 'Meta-World/reach-v3'), their specs and scores need no
simulator, and building them needs the optional `suites` extra (docs/suites.md).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np

from jaxaug.envs import suites
from jaxaug.types import EnvSpec

# Canonical gymnasium ids and the keyword arguments jaxaug always passes.
ENV_KWARGS: dict[str, dict[str, Any]] = {
    "Hopper-v5": {},
    "HalfCheetah-v5": {},
    "Walker2d-v5": {},
    # D4RL's ant observation has no contact forces: 27 dims instead of gymnasium's default 105.
    "Ant-v5": {"include_cfrc_ext_in_observation": False},
}

_SHORT_NAMES = {
    "hopper": "Hopper-v5",
    "halfcheetah": "HalfCheetah-v5",
    "walker2d": "Walker2d-v5",
    "walker": "Walker2d-v5",
    "ant": "Ant-v5",
}


@dataclasses.dataclass(frozen=True)
class ReferenceScores:
  random: float
  expert: float


# D4RL's REF_MIN_SCORE / REF_MAX_SCORE for the locomotion tasks (D4RL, Fu et al. 2020),
# applied to the v5 environments.
D4RL_REFERENCE_SCORES: dict[str, ReferenceScores] = {
    "Hopper-v5": ReferenceScores(-20.272305, 3234.3),
    "HalfCheetah-v5": ReferenceScores(-280.178953, 12135.0),
    "Walker2d-v5": ReferenceScores(1.629008, 4592.3),
    "Ant-v5": ReferenceScores(-325.6, 3879.7),
}

# Observation/action sizes, so specs need no simulator (checked against gymnasium in tests).
_SPECS = {
    "Hopper-v5": (11, 3),
    "HalfCheetah-v5": (17, 6),
    "Walker2d-v5": (17, 6),
    "Ant-v5": (27, 8),
}


def resolve_env_id(name: str) -> str:
  """Map 'hopper', 'hopper-medium-v2', 'Hopper-v5', 'halfcheetah-medium-expert' ... to the id.

  Raises ValueError naming the input when no supported environment matches.
  """
  if not isinstance(name, str) or not name:
    raise ValueError(f"env id must be a non-empty string, got {name!r}")
  if name in ENV_KWARGS:
    return name
  suite_id = suites.resolve_suite_id(name)
  if suite_id is not None:
    return suite_id
  # D4RL ids ('hopper-medium-v2') and Minari ids ('mujoco/hopper/expert-v0'): the first part
  # whose leading word is a known task name decides.
  for part in name.strip().lower().split("/"):
    head = re.sub(r"-v\d+$", "", part).split("-")[0].split("_")[0]
    if head in _SHORT_NAMES:
      return _SHORT_NAMES[head]
  raise ValueError(f"unknown environment {name!r}; expected one of {sorted(ENV_KWARGS)} or a "
                   f"short/D4RL-style name starting with one of {sorted(_SHORT_NAMES)}, or a "
                   f"suite dataset/environment name: one of {sorted(suites.D4RL_DATASETS)} "
                   "(with its -v<k> version), a Minari id D4RL/<domain>/<name>-v<k>, "
                   f"{sorted(suites.SUITE_ENVS)} or Meta-World/<task>-v3")


def env_spec(env_id: str) -> EnvSpec:
  env_id = resolve_env_id(env_id)
  if suites.is_suite_env(env_id):
    s = suites.suite_env(env_id)
    return EnvSpec(obs_dim=s.obs_dim, act_dim=s.act_dim, max_action=1.0, env_id=env_id)
  obs_dim, act_dim = _SPECS[env_id]
  return EnvSpec(obs_dim=obs_dim, act_dim=act_dim, max_action=1.0, env_id=env_id)


def reference_scores(env_id: str) -> ReferenceScores:
  """D4RL's (REF_MIN_SCORE, REF_MAX_SCORE) of an environment (AntMaze (0, 1), Kitchen (0, 4),
  Maze2D and Adroit per task). Meta-World has none: it is scored by success rate."""
  env_id = resolve_env_id(env_id)
  if suites.is_suite_env(env_id):
    s = suites.suite_env(env_id)
    if s.ref_min is None:
      raise ValueError(f"{env_id} has no reference returns: {s.suite} is scored by success "
                       "rate (use episode_scores with the episodes' success flags)")
    return ReferenceScores(s.ref_min, s.ref_max)
  return D4RL_REFERENCE_SCORES[env_id]


def normalized_score(env_id: str, returns):
  """100 * (return - random) / (expert - random), with D4RL's references (see module doc).

  Suites: AntMaze returns are 0/1 (goal reached), so this is success x 100; Kitchen returns
  count completed tasks (0..4), so this is tasks / 4 x 100.
  """
  ref = reference_scores(env_id)
  out = 100.0 * (np.asarray(returns, np.float64) - ref.random) / (ref.expert - ref.random)
  return float(out) if np.ndim(out) == 0 else out


def scored_by_success(env_id: str) -> bool:
  """True for environments whose papers report success rates (Meta-World)."""
  env_id = resolve_env_id(env_id)
  return suites.is_suite_env(env_id) and suites.suite_env(env_id).score == "success"


def episode_scores(env_id: str, returns, successes):
  """Per-episode score as the papers report it: 100 x success for Meta-World, else the D4RL
  normalised score of the return."""
  if scored_by_success(env_id):
    return 100.0 * np.asarray(successes, np.float64)
  return normalized_score(env_id, returns)


def require_env(env_id: str) -> None:
  """Raises ImportError naming the `suites` extra when env_id needs a package not installed
  (call it before training when evaluation will need the environment)."""
  env_id = resolve_env_id(env_id)
  if suites.is_suite_env(env_id):
    suites.require("metaworld" if suites.suite_env(env_id).suite == "metaworld"
                   else "gymnasium_robotics")


def observation_layout(env_id: str) -> str:
  """The environment's flat observation layout in words (block(size) + ...)."""
  env_id = resolve_env_id(env_id)
  if suites.is_suite_env(env_id):
    return suites.suite_env(env_id).layout_text()
  return f"gymnasium {env_id} observation({_SPECS[env_id][0]})"


def check_dataset_layout(env_id: str, obs_dim: int, act_dim: int, source: str = "dataset"
                         ) -> None:
  """Raises ValueError naming both layouts when a dataset's dims do not line up with the
  environment's flat observation/action layout."""
  spec = env_spec(env_id)
  if (obs_dim, act_dim) == (spec.obs_dim, spec.act_dim) or not suites.is_suite_env(spec.env_id):
    return  # locomotion: jaxaug.data.validate names the mismatching field
  hint = ""
  if suites.is_suite_env(spec.env_id) and suites.suite_env(spec.env_id).suite in (
      "antmaze", "maze2d", "kitchen"):
    hint = (" (Minari's re-collected maze/kitchen data keep gymnasium-robotics' dict "
            "observations, flattened in sorted key order achieved_goal + desired_goal + "
            "observation: not the D4RL layout jaxaug evaluates in; use the D4RL hdf5 files)")
  raise ValueError(
      f"{source}: observations have {obs_dim} dims and actions {act_dim}, but {spec.env_id} "
      f"expects the layout {observation_layout(spec.env_id)} = {spec.obs_dim} dims and "
      f"{spec.act_dim} action dims{hint}")


_WARNING_HANDLER_INSTALLED = False


def silence_mujoco_xml_warnings() -> None:
  """Route MuJoCo's user warnings to absl logging instead of stderr + MUJOCO_LOG.TXT.

  HalfCheetah's XML uses the deprecated 'settotalmass' attribute; under mujoco 4 the warning is
  also appended to MUJOCO_LOG.TXT in the working directory on every construction. That one is
  dropped; any other MuJoCo warning is logged.
  """
  global _WARNING_HANDLER_INSTALLED
  if _WARNING_HANDLER_INSTALLED:
    return
  import mujoco
  from absl import logging

  def handler(msg):
    text = msg if isinstance(msg, str) else str(msg)
    if "settotalmass" not in text:
      logging.warning("MuJoCo: %s", text.strip())

  mujoco.set_mju_user_warning(handler)
  _WARNING_HANDLER_INSTALLED = True


def make_env(env_id: str, seed: int | None = None, **kwargs):
  """A single gymnasium env (with the TimeLimit of its registration); reset with `seed` once.

  Suite environments come with the D4RL files' flat float32 layout (jaxaug/envs/suites)."""
  import gymnasium as gym
  silence_mujoco_xml_warnings()
  env_id = resolve_env_id(env_id)
  if suites.is_suite_env(env_id):
    from jaxaug.envs.suites import wrappers
    return wrappers.make_suite_env(env_id, seed=seed, **kwargs)
  env = gym.make(env_id, **{**ENV_KWARGS[env_id], **kwargs})
  if seed is not None:
    env.reset(seed=int(seed))
    env.action_space.seed(int(seed))
  return env


def make_vector_env(env_id: str, num_envs: int, seed: int | None = None, **kwargs):
  """A synchronous gymnasium vector env; sub-env i is seeded with seed + i when seed is given."""
  import gymnasium as gym
  if num_envs < 1:
    raise ValueError(f"num_envs must be >= 1, got {num_envs}")
  silence_mujoco_xml_warnings()
  env_id = resolve_env_id(env_id)
  if suites.is_suite_env(env_id):
    from jaxaug.envs.suites import wrappers
    return wrappers.make_suite_vector_env(env_id, num_envs, seed=seed, **kwargs)
  env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                     **{**ENV_KWARGS[env_id], **kwargs})
  if seed is not None:
    env.reset(seed=int(seed))
    env.action_space.seed(int(seed))
  return env
