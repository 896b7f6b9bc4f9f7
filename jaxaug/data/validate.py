"""Dataset validation: every loader calls `validate_dataset` before handing data out.

Errors are ValueErrors that start with the dataset's source (file or name) and name the field,
what was found and what was expected. The rules (see BUILD_NOTES.md, "Data layer"):

  * non-empty; observations/next_observations (N, obs_dim), actions (N, act_dim), rewards,
    terminals, timeouts (N,); every infos array has N rows;
  * all float fields and infos finite (the first bad row is reported);
  * terminals and timeouts in {0, 1};
  * obs_dim/act_dim equal to the EnvSpec's when one is given;
  * episode boundaries exist: a dataset longer than `max_unbounded_length` (10k) transitions
    with no terminal and no timeout anywhere is rejected. Every task in scope caps episodes at
    <= 1000 steps, so 10k rows with no boundary means the boundary fields were lost (e.g. an old
    D4RL file without timeouts); short single-episode files (tests, debugging) stay legal;
  * episodic continuity: inside an episode next_observations[i] == observations[i+1]. More than
    `max_next_obs_mismatch` (1%) of in-episode pairs breaking it is an error; a few breaks
    (dataset junctions such as D4RL medium-expert) are tolerated and loaders mark them as episode
    ends. Transition-only data (e.g. synthetic SynthER samples) declares
    metadata['episodic'] = False and skips this rule.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from jaxaug.data.dataset import TRANSITION_FIELDS, OfflineDataset
from jaxaug.types import EnvSpec

# D4RL/our npz layout: fields that must be present in a file.
REQUIRED_FIELDS = ("observations", "actions", "rewards", "terminals")


def require_fields(present, required, source: str, layout: str) -> None:
  """Raises a ValueError naming the first required field missing from a file."""
  present = set(present)
  missing = [k for k in required if k not in present]
  if missing:
    raise ValueError(f"{source}: missing required field '{missing[0]}' "
                     f"({layout} layout needs {', '.join(required)}; found "
                     f"{', '.join(sorted(present)) or 'nothing'})")


def check_lengths(arrays: Mapping[str, np.ndarray], source: str, n: int | None = None,
                  reference: str = "observations") -> int:
  """All arrays share the leading length of `arrays[reference]` (or `n`); returns it."""
  for key, value in arrays.items():
    if not np.ndim(value):  # a scalar where a column of N rows belongs
      raise ValueError(f"{source}: field '{key}' is a scalar, expected an array with one row per "
                       f"transition")
  if n is None:
    n = int(np.shape(arrays[reference])[0])
  for key, value in arrays.items():
    rows = int(np.shape(value)[0])
    if rows != n:
      raise ValueError(f"{source}: field '{key}' has {rows} rows, expected {n} "
                       f"(the length of '{reference}')")
  return n


# dtype kinds a field may have before loaders cast it (numpy kind codes): floats and integers
# for the float fields; bool too for the 0/1 flags and infos. Strings, bytes, objects and complex
# numbers are refused rather than silently converted ('0.5' strings would parse as numbers).
NUMERIC_KINDS = "iuf"
FLAG_KINDS = "biuf"
_KIND_TEXT = {NUMERIC_KINDS: "float or integer numbers", FLAG_KINDS: "bool, integer or float numbers"}


def check_dtypes(arrays: Mapping[str, np.ndarray], source: str) -> None:
  """Raises a ValueError naming the first field whose dtype is not a real number (or bool flag).

  Keys 'terminals', 'timeouts' and 'infos/*' may be bool; the other fields must be float or
  integer.
  """
  for key, value in arrays.items():
    dtype = np.asarray(value).dtype
    kinds = FLAG_KINDS if key in ("terminals", "timeouts") or key.startswith("infos/") \
        else NUMERIC_KINDS
    if dtype.kind not in kinds:
      raise ValueError(f"{source}: field '{key}' has dtype {dtype}, expected {_KIND_TEXT[kinds]}")


def check_binary(x: np.ndarray, field: str, source: str) -> None:
  """Raises unless every entry of `x` is 0 or 1 (bool arrays pass)."""
  x = np.asarray(x)
  bad = np.flatnonzero((x != 0) & (x != 1))
  if len(bad):
    raise ValueError(f"{source}: field '{field}' must be 0 or 1, got {x.flat[bad[0]]} at index "
                     f"{int(bad[0])}")


def first_nonfinite_row(x: np.ndarray) -> int | None:
  if not np.issubdtype(x.dtype, np.floating):
    return None
  bad = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
  idx = np.flatnonzero(bad)
  return int(idx[0]) if len(idx) else None


def next_observation_breaks(ds: OfflineDataset, atol: float = 1e-5,
                            rtol: float = 1e-5) -> np.ndarray:
  """Indices i inside an episode where next_observations[i] != observations[i+1]."""
  if len(ds) < 2:
    return np.zeros((0,), np.int64)
  done = (ds.terminals[:-1] > 0) | (ds.timeouts[:-1] > 0)
  close = np.isclose(ds.next_observations[:-1], ds.observations[1:], atol=atol,
                     rtol=rtol).all(axis=1)
  return np.flatnonzero(~done & ~close)


def validate_dataset(ds: OfflineDataset, env_spec: EnvSpec | None = None, *,
                     max_unbounded_length: int | None = 10_000,
                     max_next_obs_mismatch: float = 0.01) -> None:
  """Checks `ds` against the rules in the module docstring; raises ValueError on the first."""
  src = ds.source
  n = len(ds)
  if n == 0:
    raise ValueError(f"{src}: empty dataset (field 'rewards' has 0 rows)")

  for key in ("observations", "next_observations", "actions"):
    x = getattr(ds, key)
    if x.ndim != 2:
      raise ValueError(f"{src}: field '{key}' must be 2-D (N, dim), got shape {x.shape}")
  if ds.next_observations.shape[1:] != ds.observations.shape[1:]:
    raise ValueError(f"{src}: field 'next_observations' has shape {ds.next_observations.shape}, "
                     f"expected the shape of 'observations' {ds.observations.shape}")
  arrays = {k: getattr(ds, k) for k in TRANSITION_FIELDS}
  arrays.update({f"infos/{k}": v for k, v in ds.infos.items()})
  check_lengths(arrays, src, reference="observations")

  for key, x in arrays.items():
    bad = first_nonfinite_row(np.asarray(x))
    if bad is not None:
      raise ValueError(f"{src}: field '{key}' has a NaN or Inf value, first at index {bad}")

  for key in ("terminals", "timeouts"):
    check_binary(arrays[key], key, src)

  if env_spec is not None:
    if ds.obs_dim != env_spec.obs_dim:
      raise ValueError(f"{src}: field 'observations' has dim {ds.obs_dim}, but the environment "
                       f"{env_spec.env_id or ''} expects obs_dim={env_spec.obs_dim}")
    if ds.act_dim != env_spec.act_dim:
      raise ValueError(f"{src}: field 'actions' has dim {ds.act_dim}, but the environment "
                       f"{env_spec.env_id or ''} expects act_dim={env_spec.act_dim}")

  if (max_unbounded_length is not None and n > max_unbounded_length
      and not (ds.terminals.any() or ds.timeouts.any())):
    raise ValueError(
        f"{src}: fields 'terminals' and 'timeouts' are all 0 in {n} transitions: no episode "
        f"boundaries (more than {max_unbounded_length} rows without one means the boundary "
        f"fields were lost, e.g. a file without 'timeouts')")

  if ds.metadata.get("episodic", True) and n > 1:
    breaks = next_observation_breaks(ds)
    pairs = int(n - 1 - ((ds.terminals[:-1] > 0) | (ds.timeouts[:-1] > 0)).sum())
    if len(breaks) and len(breaks) > max_next_obs_mismatch * max(pairs, 1):
      raise ValueError(
          f"{src}: field 'next_observations' disagrees with the next row's 'observations' "
          f"inside episodes at {len(breaks)} of {pairs} steps (first at index {int(breaks[0])}; "
          f"at most {max_next_obs_mismatch:.0%} allowed). Missing episode boundaries? For "
          f"transition-only data set metadata['episodic'] = False")
