"""Load a config file from configs/ by path, the way `--config=configs/x.py:preset` does.

configs/ is not a package (ml_collections loads config files by path), so config files that
build on one another, the library and the tests all load them through these two functions.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType

import ml_collections

REPO_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def load_config_module(name_or_path: str) -> ModuleType:
  """'sac' (a file in this checkout's configs/) or a path to a config file -> its module."""
  path = name_or_path
  if not path.endswith(".py"):
    path = os.path.join(REPO_CONFIGS, path + ".py")
  if not os.path.exists(path):
    raise ValueError(f"config file {path!r} does not exist (from {name_or_path!r}); "
                     "configs/ is found beside the jaxaug package of a checkout")
  stem = os.path.splitext(os.path.basename(path))[0].replace("-", "_")
  module_spec = importlib.util.spec_from_file_location(f"jaxaug_config_{stem}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """'configs/td3bc.py:tiny' or 'td3bc:tiny' -> the ConfigDict of that preset."""
  path, _, arg = spec.partition(":")
  module = load_config_module(path)
  return module.get_config(arg) if arg else module.get_config()
