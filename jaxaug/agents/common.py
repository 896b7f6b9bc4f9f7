"""The agent convention and the small pieces every agent shares.

An agent's state is one `flax.struct.PyTreeNode` holding one `flax.training.train_state.
TrainState` per trained network (static `apply_fn` and `tx`), its target parameters, and `hp`,
a `Hyper` built from the agent's `get_config()` by `hyper_from_config` (no second list of the
same fields). In `hp`:
  * every float hyperparameter (discount, tau, alpha, expectile, temperatures, ...) is a pytree
    leaf, a float32 scalar: states that differ only in those values have the same structure and
    can be stacked and vmapped like seeds (a sweep axis);
  * ints, bools, strings and tuples (network sizes, number of critics, policy delay, switches)
    are static: part of the jit cache key, as structure should be;
  * learning rates are not in `hp`: they live where they act, in each optimiser's state
    (`adam(lr)` below is `optax.inject_hyperparams(optax.adam)`), so they are leaves too and a
    value in `hp` could never silently disagree with the one the optimiser uses.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxaug.types import EnvSpec

def _freeze(value: Any) -> Any:
  """Lists (from ConfigDicts or command lines) become tuples so the dataclass is hashable."""
  if isinstance(value, (list, tuple)):
    return tuple(_freeze(v) for v in value)
  return value


_SPEC_FIELDS = ("obs_dim", "act_dim", "max_action")


def is_lr_field(name: str) -> bool:
  return name == "lr" or name.endswith("_lr")


@jax.tree_util.register_pytree_node_class
class Hyper:
  """Hyperparameters as data: float fields are float32 leaves, all others static aux data.

  Read with attribute access (`hp.discount`); `hp.replace(tau=0.01)` returns a copy (a float
  stays a leaf, anything else stays static). `static_key` is hashable and names the structure
  (use it, not `hp`, as a cache key: leaves may be tracers).
  """

  __slots__ = ("_leaves", "_static")
  __hash__ = None  # leaves may be tracers: cache on `static_key`, never on a Hyper

  def __init__(self, leaves: Mapping[str, Any], static: Mapping[str, Any]):
    overlap = set(leaves) & set(static)
    if overlap:
      raise ValueError(f"Hyper fields {sorted(overlap)} are both leaves and static")
    object.__setattr__(self, "_leaves", dict(leaves))
    object.__setattr__(self, "_static", dict(static))

  def __getattr__(self, name: str) -> Any:
    for part in ("_leaves", "_static"):
      values = object.__getattribute__(self, part)
      if name in values:
        return values[name]
    raise AttributeError(f"hyperparameter {name!r} is not set; known: {sorted(self.names)}")

  def __setattr__(self, name, value):
    raise AttributeError("Hyper is immutable; use hp.replace(...)")

  @property
  def names(self) -> tuple[str, ...]:
    return tuple(sorted({**self._leaves, **self._static}))

  @property
  def leaf_names(self) -> tuple[str, ...]:
    return tuple(sorted(self._leaves))

  @property
  def static_key(self) -> tuple:
    return (tuple(sorted(self._leaves)), tuple(sorted(self._static.items())))

  def as_dict(self) -> dict[str, Any]:
    return {**self._static, **self._leaves}

  def replace(self, **values: Any) -> "Hyper":
    leaves, static = dict(self._leaves), dict(self._static)
    for k, v in values.items():
      if k in leaves:
        leaves[k] = jnp.asarray(v, jnp.float32)
      elif k in static:
        static[k] = _freeze(v)
      else:
        raise AttributeError(f"hyperparameter {k!r} is not set; known: {sorted(self.names)}")
    return Hyper(leaves, static)

  def tree_flatten(self):
    names = tuple(sorted(self._leaves))
    return tuple(self._leaves[n] for n in names), (names, tuple(sorted(self._static.items())))

  @classmethod
  def tree_unflatten(cls, aux, children):
    names, static = aux
    return cls(dict(zip(names, children)), dict(static))

  def __repr__(self) -> str:
    def show(v):
      try:
        return f"{float(v):g}"
      except Exception:  # tracers, arrays with a sweep axis
        return f"<{getattr(v, 'shape', '?')}>"
    leaves = ", ".join(f"{k}={show(v)}" for k, v in sorted(self._leaves.items()))
    static = ", ".join(f"{k}={v!r}" for k, v in sorted(self._static.items()))
    return f"Hyper({leaves}; static: {static})"


def _is_float(v: Any) -> bool:
  return isinstance(v, (float, np.floating)) and not isinstance(v, bool)


def hyper_from_config(config: Mapping[str, Any] | None, defaults: Mapping[str, Any],
                      spec: EnvSpec | None, agent_name: str, *, static: tuple[str, ...] = (),
                      derived: Mapping[str, Any] | None = None) -> Hyper:
  """The agent's `Hyper` from its ConfigDict (`defaults` = the agent's `get_config()`).

  A key of `config` that `defaults` lacks is a ValueError naming it (typos in
  `--config.agent.xxx` fail loudly); a key `config` lacks takes the default (configs saved
  before a field existed). Ranges are checked (`check_ranges`). Learning rates are left out
  (they go to the optimisers). Float values become leaves unless named in `static`; `spec`
  adds obs_dim, act_dim and max_action (static); `derived` adds or overrides computed values
  (e.g. a target entropy of -|A|) after the checks.
  """
  given = dict(config.items()) if config is not None else {}
  known = set(defaults.keys())
  unknown = sorted(set(given) - known)
  if unknown:
    raise ValueError(f"config.agent for {agent_name!r} has unknown field(s) {unknown}; "
                     f"known fields: {sorted(known)}")
  values = {k: _freeze(v) for k, v in {**dict(defaults.items()), **given}.items()}
  check_ranges(values, agent_name)
  values = {k: v for k, v in values.items() if not is_lr_field(k)}
  if spec is not None:
    values.update(obs_dim=int(spec.obs_dim), act_dim=int(spec.act_dim),
                  max_action=float(spec.max_action))
  values.update(derived or {})
  static_names = set(static) | set(_SPEC_FIELDS)
  leaves = {k: jnp.asarray(v, jnp.float32) for k, v in values.items()
            if _is_float(v) and k not in static_names}
  rest = {k: v for k, v in values.items() if k not in leaves}
  return Hyper(leaves, rest)


def adam(learning_rate: float, **kwargs: Any) -> optax.GradientTransformation:
  """Adam whose learning rate is a leaf of its state (`opt_state.hyperparams`), so that it can
  differ along a sweep axis; numerically the same as `optax.adam(learning_rate)`.

  Calls with equal arguments return the same object: a TrainState's `tx` is static pytree data,
  so two states initialised from one config then have equal tree structures and share compiled
  programs (a fresh object per call would make every jitted function recompile per state).
  """
  try:
    return _adam(learning_rate, tuple(sorted(kwargs.items())))
  except TypeError:  # unhashable arguments (e.g. an array): an uncached optimiser
    return _adam.__wrapped__(learning_rate, tuple(sorted(kwargs.items())))


@functools.lru_cache(maxsize=None)
def _adam(learning_rate, kwargs: tuple) -> optax.GradientTransformation:
  # Only the learning rate is injected: b1, b2 and eps stay Python constants, as in optax.adam.
  static = ("b1", "b2", "eps", "eps_root", "mu_dtype", "nesterov")
  return optax.inject_hyperparams(optax.adam, static_args=static)(learning_rate=learning_rate,
                                                                   **dict(kwargs))


_MODULES: dict = {}


def apply_fn(module):
  """`module.apply` of one shared instance per distinct module (flax modules compare by their
  fields), for TrainState's static `apply_fn`: bound methods of two equal modules compare
  unequal, which would give states from two inits of one config different tree structures."""
  return _MODULES.setdefault(module, module).apply


def scheduled_adam(learning_rate: float, schedule: Callable[..., optax.Schedule],
                   *args: Any) -> optax.GradientTransformation:
  """Adam following `schedule(lr, *args)` (an optax schedule built from a base learning rate,
  e.g. `scheduled_adam(lr, optax.cosine_decay_schedule, n)`), with the base rate a leaf.

  `opt_state.hyperparams["learning_rate"]` (what `learning_rate` returns) is the base rate, not
  the decayed one; the schedule is rebuilt from it inside every update, so the values are those
  of `optax.adam(schedule(learning_rate, *args))` and a sweep can vary the base rate per point.
  Pass a module-level function and hashable `args`: equal calls then return one object (see
  `adam`).
  """
  try:
    return _scheduled_adam(learning_rate, schedule, args)
  except TypeError:
    return _scheduled_adam.__wrapped__(learning_rate, schedule, args)


@functools.lru_cache(maxsize=None)
def _scheduled_adam(learning_rate, schedule, args: tuple) -> optax.GradientTransformation:
  def factory(learning_rate, schedule, args):
    return optax.adam(schedule(learning_rate, *args))

  return optax.inject_hyperparams(factory, static_args=("schedule", "args"))(
      learning_rate=learning_rate, schedule=schedule, args=args)


def learning_rate(train_state) -> jax.Array:
  """The learning rate a TrainState built with `adam` (or another injected optimiser) uses."""
  return train_state.opt_state.hyperparams["learning_rate"]


def copy_tree(tree: Any) -> Any:
  """A copy with distinct buffers (target networks: a donated state must not alias)."""
  return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


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


def expectile_loss(diff: jax.Array, expectile: float) -> jax.Array:
  """Asymmetric L2 of IQL (Kostrikov et al. 2022, Eq. 5), averaged: weight `expectile` where
  diff >= 0 and 1 - expectile where diff < 0. With diff = Q - V, V fits the upper expectile."""
  weight = jnp.where(diff < 0, 1.0 - expectile, expectile)
  return jnp.mean(weight * jnp.square(diff))


def temperature_loss(log_alpha: jax.Array, log_pi: jax.Array, target_entropy) -> jax.Array:
  """Automatic entropy tuning (SAC v2, Haarnoja et al. 2018b), on log(alpha): its gradient
  raises alpha while the policy's entropy E[-log pi] is below `target_entropy`."""
  return -jnp.mean(log_alpha * jax.lax.stop_gradient(log_pi + target_entropy))


def repeat_obs(obs: jax.Array, n: int, flat: bool = False) -> jax.Array:
  """Each observation repeated for n sampled actions: (B, D) -> (B, n, D), or with `flat`
  (B * n, D) with the n copies of row b at rows b * n ... b * n + n - 1 (`jnp.repeat` order)."""
  rep = jnp.broadcast_to(obs[:, None, :], (obs.shape[0], n, obs.shape[-1]))
  return rep.reshape(obs.shape[0] * n, obs.shape[-1]) if flat else rep
