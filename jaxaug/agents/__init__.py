"""RL agents: one module per algorithm, each exposing the agent protocol (jaxaug.types).

`get_agent(name)` returns the module. Modules are imported lazily, so a broken or heavy agent
never slows the others down. Adding an agent is one line in `AGENTS`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# name -> module path. Keep sorted within each group.
AGENTS: dict[str, str] = {
    # offline
    "cql": "jaxaug.agents.cql",
    "dtql": "jaxaug.agents.dtql",
    "iql": "jaxaug.agents.iql",
    "mcq": "jaxaug.agents.mcq",
    "td3bc": "jaxaug.agents.td3bc",
    # online
    "redq": "jaxaug.agents.redq",
    "rlpd": "jaxaug.agents.rlpd",
    "sac": "jaxaug.agents.sac",
}


def known_agents() -> list[str]:
  return sorted(AGENTS)


def get_agent(name: str) -> ModuleType:
  """The agent module called `name` (e.g. 'td3bc'); ValueError listing known names if unknown."""
  if name not in AGENTS:
    raise ValueError(f"unknown agent {name!r} (config.agent_name); known agents: "
                     f"{', '.join(known_agents())}")
  return importlib.import_module(AGENTS[name])
