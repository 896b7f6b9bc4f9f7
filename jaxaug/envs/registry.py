"""gymnasium environment factory, name resolution and D4RL reference scores.

jaxaug evaluates on the gymnasium MuJoCo v5 environments. D4RL's datasets were collected on the
v2 environments of gym 0.x; the v5 dynamics are the same MuJoCo models, so we apply D4RL's
reference returns (the random- and expert-policy returns D4RL normalises with) to the v5
environments unchanged. Scores are therefore *D4RL-referenced*, not D4RL-identical.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy as np

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
  # D4RL ids ('hopper-medium-v2') and Minari ids ('mujoco/hopper/expert-v0'): the first part
  # whose leading word is a known task name decides.
  for part in name.strip().lower().split("/"):
    head = re.sub(r"-v\d+$", "", part).split("-")[0].split("_")[0]
    if head in _SHORT_NAMES:
      return _SHORT_NAMES[head]
  raise ValueError(f"unknown environment {name!r}; expected one of {sorted(ENV_KWARGS)} or a "
                   f"short/D4RL-style name starting with one of {sorted(_SHORT_NAMES)}")


def env_spec(env_id: str) -> EnvSpec:
  env_id = resolve_env_id(env_id)
  obs_dim, act_dim = _SPECS[env_id]
  return EnvSpec(obs_dim=obs_dim, act_dim=act_dim, max_action=1.0, env_id=env_id)


def reference_scores(env_id: str) -> ReferenceScores:
  return D4RL_REFERENCE_SCORES[resolve_env_id(env_id)]


def normalized_score(env_id: str, returns):
  """100 * (return - random) / (expert - random), with D4RL's references (see module doc)."""
  ref = reference_scores(env_id)
  out = 100.0 * (np.asarray(returns, np.float64) - ref.random) / (ref.expert - ref.random)
  return float(out) if np.ndim(out) == 0 else out


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
  """A single gymnasium env (with the TimeLimit of its registration); reset with `seed` once."""
  import gymnasium as gym
  silence_mujoco_xml_warnings()
  env_id = resolve_env_id(env_id)
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
  env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                     **{**ENV_KWARGS[env_id], **kwargs})
  if seed is not None:
    env.reset(seed=int(seed))
    env.action_space.seed(int(seed))
  return env
