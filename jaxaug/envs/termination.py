"""Termination rules of the MuJoCo v5 locomotion tasks as pure functions of the NEXT observation.

gymnasium ends Hopper, Walker2d and Ant episodes when the robot becomes unhealthy; HalfCheetah
never terminates. Generated data (ATraDiff's synthetic trajectories) has no terminal channel,
so without these rules every synthetic fall would be stored as a transition the critic
bootstraps through. The rules below are gymnasium v5's `is_healthy` with the default ranges,
written on the observation (which excludes the x (and y) position): tests check them against
`env.step`'s `terminated` on random rollouts. Vectorised and jittable (jnp), like the
termination functions model-based RL methods use for their imagined rollouts.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxaug.envs.registry import resolve_env_id

TerminationFn = Callable[[jax.Array], jax.Array]  # (..., obs_dim) -> (...) bool


def _hopper(next_obs: jax.Array) -> jax.Array:
  # obs = qpos[1:] (z, angle, 3 joints) ++ qvel (6); state_vector()[2:] = obs[1:].
  z, angle = next_obs[..., 0], next_obs[..., 1]
  healthy = (z > 0.7) & (jnp.abs(angle) < 0.2)
  healthy &= jnp.all(jnp.abs(next_obs[..., 1:]) < 100.0, axis=-1)
  return ~healthy


def _walker2d(next_obs: jax.Array) -> jax.Array:
  z, angle = next_obs[..., 0], next_obs[..., 1]
  return ~((z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0))


def _ant(next_obs: jax.Array) -> jax.Array:
  # obs = qpos[2:] (z, quaternion, joints) ++ qvel (no contact forces, as in D4RL).
  z = next_obs[..., 0]
  return ~(jnp.all(jnp.isfinite(next_obs), axis=-1) & (z >= 0.2) & (z <= 1.0))


def _never(next_obs: jax.Array) -> jax.Array:
  return jnp.zeros(next_obs.shape[:-1], bool)


_RULES: dict[str, TerminationFn] = {
    "Hopper-v5": _hopper,
    "Walker2d-v5": _walker2d,
    "Ant-v5": _ant,
    "HalfCheetah-v5": _never,
}


def termination_fn(env_id: str) -> TerminationFn:
  """The termination rule of `env_id` (a gymnasium id or a short name like 'hopper')."""
  canonical = resolve_env_id(env_id)
  if canonical not in _RULES:
    raise ValueError(f"no termination rule for environment {env_id!r}; known: "
                     f"{sorted(_RULES)}")
  return _RULES[canonical]
