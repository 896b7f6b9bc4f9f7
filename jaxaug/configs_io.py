"""Load a config file from configs/ by path, the way `--config=configs/x.py:preset` does."""

from __future__ import annotations

import importlib.util
import os

import ml_collections

REPO_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """'configs/td3bc.py:tiny' or 'td3bc:tiny' -> the ConfigDict of that preset."""
  path, _, arg = spec.partition(":")
  if not path.endswith(".py"):
    path = os.path.join(REPO_CONFIGS, path + ".py")
  if not os.path.exists(path):
    raise ValueError(f"config file {path!r} does not exist (from {spec!r})")
  module_spec = importlib.util.spec_from_file_location(
      "jaxaug_config_" + os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()
