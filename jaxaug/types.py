"""Small shared types: the environment spec and the agent protocol.

An *agent* in jaxaug is a module (or any object) exposing pure functions:

    get_config() -> ml_collections.ConfigDict          # paper/CORL defaults
    init(key, spec: EnvSpec, config) -> state          # state: flax.struct.PyTreeNode
    update(state, batch: Transitions, key) -> (state, metrics: dict[str, scalar])
    act(state, observations, key, deterministic: bool = True) -> actions

`update` sees one *global* batch and is written for one device; data parallelism is added
outside, in `jaxaug.train`, by sharding the batch over the `data` mesh axis. Hyperparameters
that change the program live in the state as static fields (`pytree_node=False`), so `update`
and `act` need nothing but the state.
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
