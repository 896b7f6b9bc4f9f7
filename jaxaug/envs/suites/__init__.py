"""The papers' benchmark suites beyond locomotion: AntMaze, Maze2D, FrankaKitchen, Adroit,
Meta-World (optional extra `suites`; docs/suites.md).

`specs` is plain data (no simulator import); `wrappers` builds the environments with the D4RL
files' flat observation layout; `compat` checks the optional packages and applies the mujoco 4
shims they need.
"""

from jaxaug.envs.suites.compat import INSTALL_HINT, available, require
from jaxaug.envs.suites.specs import (D4RL_DATASETS, SUITE_ENVS, SuiteEnv, is_suite_env,
                                      resolve_suite_id, suite_env)

__all__ = ["D4RL_DATASETS", "INSTALL_HINT", "SUITE_ENVS", "SuiteEnv", "available",
           "is_suite_env", "require", "resolve_suite_id", "suite_env"]
