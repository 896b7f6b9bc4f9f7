"""Small shared types: the environment spec and the agent protocol.

An *agent* in jaxaug is a module (or any object) exposing pure functions:

    get_config() -> ml_collections.ConfigDict          # paper/CORL defaults
    init(key, spec: EnvSpec, config) -> state          # state: flax.struct.PyTreeNode
    update(state, batch: Transitions, key) -> (state, metrics: dict[str, scalar])
    act(state, observations, key, deterministic: bool = True) -> actions

and optionally

    update_utd(state, batch, key, utd_ratio: int) -> (state, metrics)   # online, UTD > 1
    td_error(state, batch: Transitions, key) -> (B,) array              # |TD error| per row

`td_error` is what code outside the agent uses when it needs the critic's view of a batch
(ATraDiff's TD-error importance indicator) without reading the agent's internals; an agent
without it cannot be combined with such code (a ValueError names the config field).

`update` sees one *global* batch and is written for one device; data parallelism is added
outside, in `jaxaug.train`, by sharding the batch over the `data` mesh axis. The state is one
`flax.struct.PyTreeNode` (jaxaug.agents.common): float hyperparameters are leaves of its `hp`
(so states differing only in them stack and vmap like seeds), those that change the program
are static, so `update` and `act` need nothing but the state.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Protocol

import jax

PRNGKey = jax.Array
Metrics = Mapping[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class EnvSpec:
  """Static description of an environment's spaces (hashable, usable as a static arg)."""

  obs_dim: int
  act_dim: int
  max_action: float = 1.0
  env_id: str | None = None

  def __post_init__(self):
    if self.obs_dim <= 0 or self.act_dim <= 0:
      raise ValueError(f"EnvSpec needs positive dimensions, got obs_dim={self.obs_dim}, "
                       f"act_dim={self.act_dim}")


class Agent(Protocol):
  get_config: Callable[[], Any]
  init: Callable[..., Any]
  update: Callable[..., tuple[Any, Metrics]]
  act: Callable[..., jax.Array]
  # Optional (not every agent has them): update_utd(state, batch, key, utd_ratio) and
  # td_error(state, batch, key) -> (B,); see the module docstring.


def td_error_fn(agent: Any, field: str) -> Callable[..., jax.Array]:
  """`agent.td_error`, or a ValueError naming the config `field` that asked for it."""
  fn = getattr(agent, "td_error", None)
  if fn is None:
    name = getattr(agent, "__name__", type(agent).__name__)
    raise ValueError(f"{field} needs an agent with td_error(state, batch, key) (the agent "
                     f"protocol, jaxaug/types.py); {name} has none")
  return fn
