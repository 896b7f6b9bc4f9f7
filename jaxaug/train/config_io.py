"""Writing and reading the experiment config stored in a workdir."""

from __future__ import annotations

import json
import os

import ml_collections

from jaxaug.utils import atomic_write_text


def save_config(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Write `config.json` (atomically) to the workdir and return its path."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "config.json")
  atomic_write_text(path, config.to_json_best_effort(indent=2, sort_keys=True))
  return path


def load_config(workdir: str) -> ml_collections.ConfigDict:
  with open(os.path.join(workdir, "config.json")) as f:
    return ml_collections.ConfigDict(json.load(f))
