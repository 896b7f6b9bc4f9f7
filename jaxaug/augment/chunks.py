"""Killable, resumable generation in chunks, shared by GTA and SynthER.

Chunk c is produced by `chunk_fn(jax.random.fold_in(key, c))`, so its content depends only on
(key, c): a killed run that is restarted regenerates exactly the missing chunks, neither losing
nor duplicating samples. Each chunk is written atomically (temporary name + rename) as
`chunk_000123.npz`; a `generation.json` fingerprint (method, config, checkpoint step, seed)
guards against resuming with different settings. Chunks are generated until their transitions
reach `num_transitions`; the concatenation is truncated to exactly that many.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable

import jax
import numpy as np

from jaxaug import faults
from jaxaug.data.dataset import TRANSITION_FIELDS, OfflineDataset
from jaxaug.data.fileio import atomic_path, to_jsonable, write_json_atomic

FINGERPRINT = "generation.json"


def _chunk_path(directory: str, c: int) -> str:
  return os.path.join(directory, f"chunk_{c:06d}.npz")


def _save_chunk(path: str, arrays: dict[str, np.ndarray]) -> None:
  with atomic_path(path, suffix=".npz") as tmp:
    with open(tmp, "wb") as f:
      np.savez(f, **arrays)
    faults.point("augment.chunk")  # test-only kill point: written, not renamed


def _load_chunk(path: str) -> dict[str, np.ndarray]:
  try:
    with np.load(path, allow_pickle=False) as z:
      return {k: z[k] for k in z.files}
  except Exception as e:  # a chunk is only ever renamed into place complete
    raise ValueError(f"{path}: unreadable generation chunk ({e}); delete it to regenerate") from e


def check_fingerprint(directory: str, fingerprint: dict) -> None:
  """Write the fingerprint on first use; raise if an existing one differs."""
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, FINGERPRINT)
  fp = to_jsonable(fingerprint)
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    if old != json.loads(json.dumps(fp)):
      raise ValueError(f"{path}: existing chunks were made with different settings; use another "
                       f"chunk directory or delete it.\n  existing: {old}\n  now:      {fp}")
  else:
    write_json_atomic(path, fp)


def generate_in_chunks(chunk_fn: Callable[[jax.Array], dict[str, np.ndarray]], key: jax.Array,
                       num_transitions: int, directory: str | None, fingerprint: dict,
                       log: Callable[[str], Any] | None = print,
                       max_chunks: int | None = None) -> dict[str, np.ndarray]:
  """Run chunk_fn over chunks 0, 1, ... until num_transitions; returns the truncated arrays.

  `chunk_fn(key)` returns host arrays with a leading transition axis (TRANSITION_FIELDS at
  least). With `directory` None nothing is saved (no resume). `max_chunks` stops early (used by
  tests to simulate a kill) and returns what exists.
  """
  if num_transitions <= 0:
    raise ValueError(f"num_transitions must be positive, got {num_transitions}")
  if directory is not None:
    check_fingerprint(directory, fingerprint)
  parts, total, c, made, t0 = [], 0, 0, 0, time.time()
  while total < num_transitions:
    if max_chunks is not None and c >= max_chunks:
      break
    path = _chunk_path(directory, c) if directory is not None else None
    if path is not None and os.path.exists(path):
      arrays = _load_chunk(path)
    else:
      arrays = {k: np.asarray(v) for k, v in chunk_fn(jax.random.fold_in(key, c)).items()}
      made += 1
      if path is not None:
        _save_chunk(path, arrays)
    n = len(arrays["rewards"])
    if n == 0:
      raise ValueError(f"generation chunk {c} produced no transitions")
    parts.append(arrays)
    total += n
    c += 1
    if log is not None:
      rate = total / max(time.time() - t0, 1e-9)
      log(f"chunk {c}: {min(total, num_transitions)}/{num_transitions} transitions "
          f"({made} generated this run, {rate:.0f}/s)")
  out = {k: np.concatenate([p[k] for p in parts])[:num_transitions] for k in parts[0]}
  return out


def to_dataset(arrays: dict[str, np.ndarray], metadata: dict, source: str) -> OfflineDataset:
  fields = {k: arrays[k] for k in TRANSITION_FIELDS}
  infos = {k: v for k, v in arrays.items() if k not in TRANSITION_FIELDS}
  return OfflineDataset(**fields, infos=infos, metadata=metadata, source=source)
