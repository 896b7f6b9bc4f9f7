"""Small helpers shared by the agents: static hyperparameters, optimisers, TD losses.

Every agent keeps its hyperparameters as one frozen, hashable dataclass in a static field of
its state (`flax.struct.field(pytree_node=False)`), built from the agent's ConfigDict by
`hparams_from_config`. Networks and optimisers are rebuilt from those hyperparameters inside
`update`/`act` (they are cheap Python objects; only their parameters and states are pytrees).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, TypeVar

import jax
import jax.numpy as jnp
import optax

from jaxaug.types import EnvSpec

H = TypeVar("H")


def _freeze(value: Any) -> Any:
  """Lists (from ConfigDicts or command lines) become tuples so the dataclass is hashable."""
  if isinstance(value, (list, tuple)):
    return tuple(_freeze(v) for v in value)
  return value


def hparams_from_config(cls: type[H], config: Mapping[str, Any] | None, spec: EnvSpec,
                        agent_name: str, **derived: Any) -> H:
  """Build the frozen hyperparameter dataclass `cls` from an agent ConfigDict and the env spec.

  Fields named `obs_dim`, `act_dim` and `max_action` come from `spec`; `derived` supplies
  fields computed by the agent (e.g. a target entropy of -|A|). A config key that is not a
  field of `cls` is a ValueError naming it, so typos in `--config.agent.xxx` overrides fail
  loudly instead of being ignored.
  """
  names = {f.name for f in dataclasses.fields(cls)}
  given = dict(config.items()) if config is not None else {}
  unknown = sorted(set(given) - names)
  if unknown:
    raise ValueError(f"config.agent for {agent_name!r} has unknown field(s) {unknown}; "
                     f"known fields: {sorted(names - {'obs_dim', 'act_dim', 'max_action'})}")
  values = {k: _freeze(v) for k, v in given.items()}
  check_ranges(values, agent_name)
  values.update(obs_dim=spec.obs_dim, act_dim=spec.act_dim, max_action=float(spec.max_action))
  values.update(derived)
  return cls(**{k: v for k, v in values.items() if k in names})


def _is_number(x: Any) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_ranges(values: Mapping[str, Any], agent_name: str) -> None:
  """Range checks shared by every agent, by field name; a ValueError names the field.

  Learning rates (`lr`, `*_lr`) > 0; `discount` in [0, 1]; `tau` (Polyak rate) in (0, 1];
  `expectile` in (0, 1); `*hidden_dims` a non-empty list of positive integers; `*hidden_dim`
  a positive integer. None (a placeholder the agent fills in) is skipped.
  """
  def bad(field, expected, got):
    raise ValueError(f"config.agent.{field} must be {expected} ({agent_name}), got {got!r}")
  for field, v in values.items():
    if v is None:  # a placeholder the agent derives (CQL's alpha_lr = policy_lr)
      continue
    if field == "lr" or field.endswith("_lr"):
      if not (_is_number(v) and v > 0):
        bad(field, "a positive learning rate", v)
    elif field == "discount":
      if not (_is_number(v) and 0.0 <= v <= 1.0):
        bad(field, "in [0, 1]", v)
    elif field == "tau":
      if not (_is_number(v) and 0.0 < v <= 1.0):
        bad(field, "in (0, 1]", v)
    elif field == "expectile":
      if not (_is_number(v) and 0.0 < v < 1.0):
        bad(field, "in (0, 1)", v)
    elif field.endswith("hidden_dims"):
      if not (isinstance(v, (tuple, list)) and v and all(
          isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in v)):
        bad(field, "a non-empty list of positive integers", v)
    elif field.endswith("hidden_dim"):
      if not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
        bad(field, "a positive integer", v)


def apply_updates(tx: optax.GradientTransformation, grads, opt_state, params):
  """One optimiser step; returns (new_params, new_opt_state)."""
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


def mse(pred: jax.Array, target: jax.Array) -> jax.Array:
  return jnp.mean(jnp.square(pred - target))


def td_target(rewards: jax.Array, masks: jax.Array, discount: float,
              next_value: jax.Array) -> jax.Array:
  """r + gamma * (1 - terminal) * V(s'); gradients never flow into the target."""
  return jax.lax.stop_gradient(rewards + discount * masks * next_value)
