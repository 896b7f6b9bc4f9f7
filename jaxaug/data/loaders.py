"""Dataset loaders and writers: D4RL hdf5, Minari directories, our npz, embedded datasets.

`load_dataset(spec)` picks the reader from a prefix:

  d4rl:PATH       D4RL hdf5: observations, actions, rewards, terminals, timeouts, optional
                  next_observations, infos/*, metadata/* (datasets or attributes).
  minari:PATH     a local Minari (0.4-0.5) dataset directory, read with h5py (no minari import):
                  PATH/data/main_data.hdf5 with groups episode_<i> holding observations (T+1
                  rows), actions, rewards, terminations, truncations (T rows) and infos/*, plus
                  PATH/data/metadata.json. PATH may also name the data/ folder itself.
  npz:PATH        our format: the D4RL keys ('infos/qpos' style for infos) and 'metadata', a
                  JSON string; read with allow_pickle=False.
  embedded:NAME   jaxaug/embedded/NAME.npz shipped in the package.

Without a prefix the format is inferred (.hdf5/.h5 -> d4rl, .npz -> npz, a directory -> minari).

Missing next_observations (old D4RL files) are rebuilt the way D4RL's qlearning_dataset does:
next_observations[i] = observations[i+1], and transitions whose next observation is unknown are
dropped: a timeout-ended transition (the next row is the next episode's reset) and the very last
row. A terminal transition keeps observations[i+1] (a terminal's next observation never enters a
TD target; in AntMaze the episode really does continue); a terminal last row keeps its own
observation. The row before a dropped one is marked as a timeout so episodes stay separate.

Every loader validates (jaxaug.data.validate) and then marks the few in-episode
next-observation breaks the validator tolerates as timeouts, so windows never cross them.
"""

from __future__ import annotations

import importlib.resources
import json
import os
from typing import Any, Mapping

import h5py
import numpy as np

from jaxaug import faults
from jaxaug.data.dataset import TRANSITION_FIELDS, OfflineDataset
from jaxaug.data.fileio import atomic_directory, atomic_path, to_jsonable
from jaxaug.data.validate import (REQUIRED_FIELDS, check_binary, check_dtypes, check_lengths,
                                  next_observation_breaks, require_fields, validate_dataset)
from jaxaug.types import EnvSpec

FORMATS = ("d4rl", "minari", "npz", "embedded")
EMBEDDED_PACKAGE = "jaxaug"
EMBEDDED_DIR = "embedded"
MINARI_VERSION = "0.5.4"  # the Minari version whose on-disk layout save_minari writes
# Our metadata travels with the file verbatim under this name (hdf5 root attribute, Minari
# metadata.json key) so a save/load round trip is exact.
METADATA_KEY = "jaxaug_metadata"
# D4RL metadata arrays larger than this (e.g. policy weights) are not copied into metadata.
_MAX_METADATA_ARRAY = 64


# ------------------------------------------------------------------------------------------
# Public entry point.


def load_dataset(spec: str, env_spec: EnvSpec | None = None, *,
                 episodic: bool | None = None) -> OfflineDataset:
  """Loads and validates a dataset named by `spec` ('d4rl:PATH', 'minari:PATH', ...).

  `episodic` overrides metadata['episodic']: False skips the next-observation continuity rule
  (transition-only data such as synthetic SynthER samples).
  """
  if not isinstance(spec, str):
    raise ValueError(f"dataset spec {spec!r}: expected a string such as 'd4rl:PATH'")
  fmt, _, arg = spec.partition(":")
  if fmt not in FORMATS or not arg:
    _check_prefix(spec)
    fmt, arg = _infer_format(spec), spec
  if fmt == "d4rl":
    ds = _load_d4rl(arg)
  elif fmt == "minari":
    ds = _load_minari(arg)
  elif fmt == "npz":
    ds = _load_npz(arg, source=arg)
  else:
    ds = _load_embedded(arg)
  if episodic is not None:
    ds.metadata = {**ds.metadata, "episodic": bool(episodic)}
  validate_dataset(ds, env_spec)
  return _mark_breaks(ds)


def available_embedded() -> list[str]:
  """Names usable as 'embedded:NAME'."""
  root = importlib.resources.files(EMBEDDED_PACKAGE).joinpath(EMBEDDED_DIR)
  if not root.is_dir():
    return []
  return sorted(p.name[:-4] for p in root.iterdir() if p.name.endswith(".npz"))


def _formats_expected() -> str:
  return (f"expected one of {', '.join(f + ':PATH' for f in FORMATS[:3])}, embedded:NAME "
          f"(embedded: {', '.join(available_embedded()) or 'none'}), or a path ending in "
          f".hdf5/.h5/.npz or naming a Minari directory")


def _check_prefix(spec: str) -> None:
  """'hdf:x.hdf5', 'D4RL:x': a format prefix we do not know (and not an existing path)."""
  head, sep, _ = spec.partition(":")
  if head in FORMATS and not os.path.exists(spec):
    raise ValueError(f"dataset spec '{spec}': nothing after '{head}:'; expected "
                     f"{'embedded:NAME' if head == 'embedded' else head + ':PATH'}")
  if sep and head.isidentifier() and len(head) > 1 and not os.path.exists(spec):
    raise ValueError(f"dataset spec '{spec}': unknown format prefix '{head}:'; "
                     f"{_formats_expected()}")


def _infer_format(spec: str) -> str:
  lower = spec.lower()
  if lower.endswith((".hdf5", ".h5")):
    return "d4rl"
  if lower.endswith(".npz"):
    return "npz"
  if os.path.isdir(spec):
    return "minari"
  raise ValueError(f"dataset spec '{spec}': {_formats_expected()}")


# ------------------------------------------------------------------------------------------
# Building an OfflineDataset from raw arrays.


def _from_arrays(arrays: Mapping[str, np.ndarray], infos: Mapping[str, np.ndarray],
                 metadata: dict[str, Any], source: str, layout: str) -> OfflineDataset:
  """Checks fields and lengths, fills optional fields, rebuilds next_observations if needed."""
  require_fields(arrays.keys(), REQUIRED_FIELDS, source, layout)
  if not isinstance(metadata, dict):
    raise ValueError(f"{source}: field 'metadata' is a JSON {type(metadata).__name__}, expected "
                     f"a JSON object")
  check_dtypes({**arrays, **{f"infos/{k}": v for k, v in infos.items()}}, source)
  arrays = dict(arrays)
  for key in ("rewards", "terminals", "timeouts"):
    if key in arrays and np.ndim(arrays[key]) == 2 and np.shape(arrays[key])[1] == 1:
      arrays[key] = np.asarray(arrays[key])[:, 0]  # some writers store (N, 1)
  if "timeouts" not in arrays:
    # Files without timeouts (very old D4RL) only have terminals; validation rejects long ones
    # that then have no episode boundary at all.
    arrays["timeouts"] = np.zeros(np.shape(arrays["rewards"])[:1], np.float32)
    metadata = {**metadata, "timeouts_missing": True}
  fields = {k: np.asarray(arrays[k]) for k in TRANSITION_FIELDS if k in arrays}
  all_arrays = {**fields, **{f"infos/{k}": v for k, v in infos.items()}}
  check_lengths(all_arrays, source, reference="observations")
  for key in ("rewards", "terminals", "timeouts"):
    if fields[key].ndim != 1:
      raise ValueError(f"{source}: field '{key}' must have shape (N,), got {fields[key].shape}")
  infos = {k: np.asarray(v) for k, v in infos.items()}
  if "next_observations" not in fields:
    for key in ("terminals", "timeouts"):  # the rebuild reads them as episode boundaries
      check_binary(fields[key], key, source)
    fields, infos = _rebuild_next_observations(fields, infos)
    metadata = {**metadata, "next_observations_rebuilt": True}
  return OfflineDataset(**fields, infos=infos, metadata=metadata, source=source)


def _rebuild_next_observations(fields: dict[str, np.ndarray], infos: dict[str, np.ndarray]):
  """next_observations[i] = observations[i+1]; drops rows whose next observation is unknown."""
  obs = fields["observations"]
  n = len(obs)
  term = np.asarray(fields["terminals"]) > 0
  timeouts = np.asarray(fields["timeouts"], np.float32).copy()  # bad values left to validate
  tout = timeouts > 0
  next_obs = np.concatenate([obs[1:], obs[-1:]], axis=0) if n else obs
  keep = ~(tout & ~term)
  if n:
    keep[-1] = term[-1]
  dropped = np.flatnonzero(~keep)
  prev = dropped[dropped > 0] - 1
  timeouts[prev[~term[prev] & ~tout[prev]]] = 1.0  # the row before a dropped one ends its episode
  out = dict(fields, next_observations=next_obs, timeouts=timeouts)
  out = {k: v[keep] for k, v in out.items()}
  return out, {k: v[keep] for k, v in infos.items()}


def _mark_breaks(ds: OfflineDataset) -> OfflineDataset:
  """Marks the tolerated in-episode next-observation breaks as timeouts (episode ends)."""
  if not ds.metadata.get("episodic", True):
    return ds
  breaks = next_observation_breaks(ds)
  if len(breaks):
    ds.timeouts = ds.timeouts.copy()
    ds.timeouts[breaks] = 1.0
    ds.metadata = {**ds.metadata, "marked_breaks": int(len(breaks))}
  return ds


# ------------------------------------------------------------------------------------------
# D4RL hdf5.


def _h5_value(value: Any) -> Any:
  if isinstance(value, (bytes, np.bytes_)):
    return value.decode("utf-8", errors="replace")
  if isinstance(value, np.ndarray):
    if value.dtype.kind in "SO":
      return [_h5_value(v) for v in value.tolist()]
    return value.tolist()
  if isinstance(value, np.generic):
    return value.item()
  return value


def _read_metadata_group(group: h5py.Group, prefix: str, out: dict, skipped: list) -> None:
  for key, value in group.attrs.items():
    out[f"{prefix}{key}"] = to_jsonable(_h5_value(value))
  for key, item in group.items():
    if isinstance(item, h5py.Group):
      _read_metadata_group(item, f"{prefix}{key}/", out, skipped)
    elif item.size <= _MAX_METADATA_ARRAY:
      out[f"{prefix}{key}"] = to_jsonable(_h5_value(item[()]))
    else:
      skipped.append(f"{prefix}{key}")


def _read_infos(group: h5py.Group, prefix: str = "") -> dict[str, np.ndarray]:
  infos = {}
  for key, item in group.items():
    if isinstance(item, h5py.Group):
      infos.update(_read_infos(item, f"{prefix}{key}/"))
    elif item.dtype.kind in "biuf" and item.ndim >= 1:
      infos[f"{prefix}{key}"] = item[()]
  return infos


def _open_hdf5(path: str, what: str) -> h5py.File:
  """h5py.File(path, 'r') with errors that name the file (missing, a directory, truncated)."""
  if os.path.isdir(path):
    raise ValueError(f"{path}: is a directory, expected {what}")
  if not os.path.isfile(path):
    raise ValueError(f"{path}: no such {what}")
  if os.path.getsize(path) == 0:
    raise ValueError(f"{path}: empty file (0 bytes), expected {what}")
  try:
    return h5py.File(path, "r")
  except OSError as e:  # truncated or not hdf5 at all
    raise ValueError(f"{path}: not a readable hdf5 file, truncated or corrupt? ({e})") from e


def _load_d4rl(path: str) -> OfflineDataset:
  f = _open_hdf5(path, "D4RL hdf5 file")
  try:
    with f:
      return _read_d4rl(f, path)
  except (OSError, RuntimeError, KeyError) as e:  # a damaged block inside an openable file
    raise ValueError(f"{path}: hdf5 file could not be read, truncated or corrupt? ({e})") from e


def _read_d4rl(f: h5py.File, path: str) -> OfflineDataset:
  arrays = {k: f[k][()] for k in TRANSITION_FIELDS if k in f and isinstance(f[k], h5py.Dataset)}
  infos = _read_infos(f["infos"]) if "infos" in f else {}
  metadata: dict[str, Any] = {}
  if METADATA_KEY in f.attrs:
    try:
      metadata = json.loads(f.attrs[METADATA_KEY])
    except (TypeError, json.JSONDecodeError) as e:
      raise ValueError(f"{path}: attribute '{METADATA_KEY}' is not JSON text ({e})") from e
  else:
    skipped: list[str] = []
    for key, value in f.attrs.items():
      metadata[key] = to_jsonable(_h5_value(value))
    if "metadata" in f:
      _read_metadata_group(f["metadata"], "", metadata, skipped)
    if skipped:
      metadata["skipped_metadata"] = skipped
  return _from_arrays(arrays, infos, metadata, path, "D4RL hdf5")


def save_d4rl_hdf5(dataset: OfflineDataset, path: str | os.PathLike) -> None:
  """Writes the D4RL hdf5 layout (atomically); metadata as datasets under metadata/.

  Terminals and timeouts are stored as bool as in D4RL; our full metadata is also kept as a JSON
  root attribute so load_dataset returns it unchanged.
  """
  path = os.fspath(path)
  with atomic_path(path, suffix=".hdf5") as tmp:
    with h5py.File(tmp, "w") as f:
      for key in TRANSITION_FIELDS:
        value = getattr(dataset, key)
        if key in ("terminals", "timeouts"):
          value = value > 0
        f.create_dataset(key, data=value, compression="gzip", compression_opts=4)
      for key, value in dataset.infos.items():
        f.create_dataset(f"infos/{key}", data=value, compression="gzip", compression_opts=4)
      meta = f.create_group("metadata")
      _write_metadata_group(meta, to_jsonable(dataset.metadata))
      f.attrs[METADATA_KEY] = json.dumps(to_jsonable(dataset.metadata))
    faults.point("hdf5.write")  # test-only kill point: written, not renamed


def _write_metadata_group(group: h5py.Group, metadata: dict) -> None:
  for key, value in metadata.items():
    key = key.replace("/", "_") or "_"
    if isinstance(value, dict):
      _write_metadata_group(group.create_group(key), value)
    elif isinstance(value, (bool, int, float)) or isinstance(value, str):
      group.create_dataset(key, data=value)
    else:  # lists, None: JSON text, as D4RL readers expect scalars here
      group.create_dataset(key, data=json.dumps(value))


# ------------------------------------------------------------------------------------------
# Our npz format.


def save_npz(dataset: OfflineDataset, path: str | os.PathLike) -> None:
  """Writes our npz format (compressed, atomically): D4RL keys, 'infos/<k>', 'metadata' JSON."""
  path = os.fspath(path)
  arrays = {k: getattr(dataset, k) for k in TRANSITION_FIELDS}
  arrays.update({f"infos/{k}": np.asarray(v) for k, v in dataset.infos.items()})
  arrays["metadata"] = np.array(json.dumps(to_jsonable(dataset.metadata)))
  with atomic_path(path, suffix=".npz") as tmp:
    with open(tmp, "wb") as f:  # a file object, so numpy does not append '.npz'
      np.savez_compressed(f, **arrays)
    faults.point("npz.write")  # test-only kill point: written, not renamed


def _load_npz(path, source: str) -> OfflineDataset:
  data = {}
  key = None
  if os.path.isdir(path):
    raise ValueError(f"{source}: is a directory, expected an npz file")
  if os.path.isfile(path) and os.path.getsize(path) == 0:
    raise ValueError(f"{source}: empty file (0 bytes), expected an npz file")
  try:
    with np.load(path, allow_pickle=False) as z:
      for key in z.files:
        data[key] = z[key]
  except FileNotFoundError as e:
    raise ValueError(f"{source}: no such npz file") from e
  except ValueError as e:  # object arrays need pickle: not our format
    raise ValueError(f"{source}: field '{key}' cannot be read without pickle ({e})") from e
  except Exception as e:  # zipfile.BadZipFile, OSError, zlib.error (truncated members)
    raise ValueError(f"{source}: not a readable npz file, truncated or corrupt? ({e})") from e
  metadata: dict[str, Any] = {}
  if "metadata" in data:
    try:
      metadata = json.loads(str(data.pop("metadata")))
    except json.JSONDecodeError as e:
      raise ValueError(f"{source}: field 'metadata' is not a JSON string ({e})") from e
  infos = {k[len("infos/"):]: v for k, v in data.items() if k.startswith("infos/")}
  arrays = {k: v for k, v in data.items() if k in TRANSITION_FIELDS}
  return _from_arrays(arrays, infos, metadata, source, "npz")


def _load_embedded(name: str) -> OfflineDataset:
  names = available_embedded()
  if name not in names:
    raise ValueError(f"embedded:{name}: unknown embedded dataset; available: "
                     f"{', '.join(names) or 'none'}")
  ref = importlib.resources.files(EMBEDDED_PACKAGE).joinpath(EMBEDDED_DIR, f"{name}.npz")
  with importlib.resources.as_file(ref) as p:
    return _load_npz(p, source=f"embedded:{name}")


# ------------------------------------------------------------------------------------------
# Minari.


def _minari_data_dir(path: str) -> str:
  if not os.path.exists(path):
    raise ValueError(f"{path}: no such Minari dataset directory")
  if not os.path.isdir(path):
    raise ValueError(f"{path}: is a file, expected a Minari dataset directory (for a D4RL or npz "
                     f"file use the d4rl: or npz: prefix)")
  for candidate in (os.path.join(path, "data"), path):
    if os.path.isfile(os.path.join(candidate, "main_data.hdf5")):
      return candidate
  raise ValueError(f"{path}: not a Minari dataset directory (no data/main_data.hdf5 or "
                   f"main_data.hdf5 inside; arrow-format Minari datasets are not supported)")


def _minari_leaf(item, source: str, field: str) -> tuple[np.ndarray, list[str] | None]:
  """A Box field, or a Dict field flattened by concatenating its keys in sorted order."""
  if isinstance(item, h5py.Dataset):
    x = item[()]
    return x.reshape(x.shape[0], -1), None
  keys = sorted(item.keys())
  if not keys:
    raise ValueError(f"{source}: field '{field}' is an empty group")
  parts = [_minari_leaf(item[k], source, f"{field}/{k}")[0] for k in keys]
  return np.concatenate(parts, axis=1), keys


def _load_minari(path: str) -> OfflineDataset:
  data_dir = _minari_data_dir(path)
  meta_file = os.path.join(data_dir, "metadata.json")
  try:
    with open(meta_file) as f:
      minari_meta = json.load(f)
  except FileNotFoundError as e:
    raise ValueError(f"{meta_file}: missing (a Minari dataset needs data/metadata.json)") from e
  except json.JSONDecodeError as e:
    raise ValueError(f"{meta_file}: not valid JSON ({e})") from e
  if not isinstance(minari_meta, dict):
    raise ValueError(f"{meta_file}: expected a JSON object, got a {type(minari_meta).__name__}")
  h5_file = os.path.join(data_dir, "main_data.hdf5")
  f = _open_hdf5(h5_file, "Minari main_data.hdf5")
  try:
    with f:
      return _read_minari(f, h5_file, minari_meta, meta_file)
  except (OSError, RuntimeError, KeyError) as e:  # a damaged block inside an openable file
    raise ValueError(f"{h5_file}: hdf5 file could not be read, truncated or corrupt? ({e})") \
        from e


def _read_minari(f: h5py.File, h5_file: str, minari_meta: dict, meta_file: str
                 ) -> OfflineDataset:
  columns: dict[str, list[np.ndarray]] = {k: [] for k in TRANSITION_FIELDS}
  info_cols: dict[str, list[np.ndarray]] = {}
  obs_keys = None
  episodes = sorted((k for k in f.keys() if k.startswith("episode_")),
                    key=lambda k: int(k.split("_", 1)[1]))
  for ep_index, ep in enumerate(episodes):
    g = f[ep]
    src = f"{h5_file}:{ep}"
    require_fields(g.keys(), ("observations", "actions", "rewards", "terminations",
                              "truncations"), src, "Minari")
    obs, obs_keys = _minari_leaf(g["observations"], src, "observations")
    act, _ = _minari_leaf(g["actions"], src, "actions")
    t = len(act)
    if len(obs) != t + 1:
      raise ValueError(f"{src}: field 'observations' has {len(obs)} rows, expected {t + 1} "
                       f"(T+1 for T={t} actions)")
    ep_arrays = {"rewards": g["rewards"][()], "terminations": g["terminations"][()],
                 "truncations": g["truncations"][()]}
    check_lengths(ep_arrays, src, n=t, reference="actions")
    for k, v in ep_arrays.items():
      if v.ndim != 1:
        raise ValueError(f"{src}: field '{k}' must have shape (T,), got {v.shape}")
    term = ep_arrays["terminations"].astype(np.float32)
    trunc = ep_arrays["truncations"].astype(np.float32)
    if t and not (term[-1] or trunc[-1]):
      # A collector that stopped mid-episode: the episode still ends here for us.
      trunc = trunc.copy()
      trunc[-1] = 1.0
    columns["observations"].append(obs[:-1])
    columns["next_observations"].append(obs[1:])
    columns["actions"].append(act)
    columns["rewards"].append(ep_arrays["rewards"])
    columns["terminals"].append(term)
    columns["timeouts"].append(trunc)
    infos = _read_infos(g["infos"]) if "infos" in g else {}
    if ep_index == 0:
      info_cols = {k: [] for k in infos}
    for k in list(info_cols):
      if k not in infos:
        del info_cols[k]  # keep only infos present in every episode
        continue
      v = infos[k]
      if len(v) not in (t, t + 1):
        raise ValueError(f"{src}: field 'infos/{k}' has {len(v)} rows, expected {t + 1}")
      info_cols[k].append(v[:t])  # the info at each transition's observation
  if not episodes:
    raise ValueError(f"{h5_file}: empty dataset (no episode_<i> groups)")
  arrays = {k: _concat_episodes(v, h5_file, k, episodes) for k, v in columns.items()}
  infos = {k: _concat_episodes(v, h5_file, f"infos/{k}", episodes) for k, v in info_cols.items()}
  if isinstance(minari_meta.get(METADATA_KEY), dict):  # written by save_minari: verbatim
    metadata = dict(minari_meta[METADATA_KEY])
  else:
    metadata = {k: minari_meta[k] for k in ("dataset_id", "algorithm_name", "minari_version",
                                            "ref_min_score", "ref_max_score", "description")
                if k in minari_meta}
    env_id = _minari_env_id(minari_meta)
    if env_id:
      metadata["env_id"] = env_id
    if obs_keys:
      metadata["observation_keys"] = obs_keys
  ds = _from_arrays(arrays, infos, metadata, h5_file, "Minari")
  _check_minari_space(minari_meta, "observation_space", ds.obs_dim, meta_file)
  _check_minari_space(minari_meta, "action_space", ds.act_dim, meta_file)
  return ds


def _concat_episodes(parts: list[np.ndarray], source: str, field: str, episodes: list[str]
                     ) -> np.ndarray:
  """Episodes' columns stacked; an episode whose rows have another shape is named."""
  for ep, part in zip(episodes, parts):
    if part.shape[1:] != parts[0].shape[1:]:
      raise ValueError(f"{source}:{ep}: field '{field}' has rows of shape {part.shape[1:]}, "
                       f"expected {parts[0].shape[1:]} as in {episodes[0]}")
  return np.concatenate(parts)


def _minari_env_id(meta: dict) -> str | None:
  spec = meta.get("env_spec")
  if isinstance(spec, str):
    try:
      return json.loads(spec).get("id")
    except json.JSONDecodeError:
      return None
  return None


def _check_minari_space(meta: dict, key: str, dim: int, source: str) -> None:
  try:
    space = json.loads(meta[key])
  except (KeyError, TypeError, json.JSONDecodeError):
    return
  if space.get("type") == "Box" and int(np.prod(space.get("shape", [dim]))) != dim:
    raise ValueError(f"{source}: field '{key}' has shape {space.get('shape')}, but the data "
                     f"has dim {dim}")


def _box_json(dim: int, low: float, high: float, dtype: str) -> str:
  # Same fields as minari.serialization for gymnasium Box spaces.
  return json.dumps({"type": "Box", "dtype": dtype, "shape": [dim], "low": [low] * dim,
                     "high": [high] * dim})


def _minari_spaces(dataset: OfflineDataset, env_id: str) -> dict[str, str]:
  """Serialised Box spaces, and the registered env spec when `env_id` has one.

  Spaces come from the data (unbounded float64 observations, as gymnasium's MuJoCo tasks use;
  actions in [-max_action, max_action], max_action from metadata, default 1) rather than from
  building the environment, which would have side effects (MuJoCo's MUJOCO_LOG.TXT).
  """
  import gymnasium as gym  # pylint: disable=g-import-not-at-top

  out = {}
  try:
    out["env_spec"] = gym.spec(env_id).to_json()
  except (gym.error.Error, TypeError, ValueError):
    pass  # not registered here, or not serialisable: the spaces below suffice for Minari
  max_action = float(dataset.metadata.get("max_action", 1.0))
  out["observation_space"] = _box_json(dataset.obs_dim, -np.inf, np.inf, "float64")
  out["action_space"] = _box_json(dataset.act_dim, -max_action, max_action, "float32")
  return out


def save_minari(dataset: OfflineDataset, directory: str | os.PathLike, env_id: str,
                dataset_id: str | None = None, overwrite: bool = False) -> None:
  """Writes a Minari 0.5 hdf5 dataset directory (DIR/data/{main_data.hdf5,metadata.json}).

  The real `minari.MinariDataset(DIR/data)` reads the result. Each episode stores T+1
  observations (the last is the final next_observation), T actions/rewards/terminations/
  truncations (timeouts; an episode's last row that is neither terminal nor timeout, e.g. the
  dataset's last row, is written as truncated), and infos with T+1 rows: the last row comes
  from infos['next_<k>'] when present and is NaN otherwise (the state after the last step is
  unknown).
  Requires next_observations[i] == observations[i+1] inside episodes, which transition-only
  data does not satisfy. The directory is written atomically.
  """
  ends = dataset.episode_ends
  starts = dataset.episode_starts
  breaks = next_observation_breaks(dataset)
  if len(breaks):
    raise ValueError(f"{dataset.source}: field 'next_observations' differs from the next row's "
                     f"observations inside an episode at index {int(breaks[0])}; the Minari "
                     f"layout stores one observation sequence per episode and cannot hold it")
  dataset_id = dataset_id or dataset.metadata.get("dataset_id") or "jaxaug/dataset-v0"
  info_keys = [k for k in dataset.infos if not k.startswith("next_")]
  with atomic_directory(directory, overwrite=overwrite) as tmp:
    data_dir = os.path.join(tmp, "data")
    os.makedirs(data_dir)
    with h5py.File(os.path.join(data_dir, "main_data.hdf5"), "w", track_order=True) as f:
      for i, (s, e) in enumerate(zip(starts, ends)):
        g = f.create_group(f"episode_{i}")
        t = int(e - s + 1)
        rewards = dataset.rewards[s:e + 1].astype(np.float64)
        g.attrs.update({"id": i, "total_steps": t, "rewards_sum": float(rewards.sum()),
                        "rewards_mean": float(rewards.mean()), "rewards_std": float(rewards.std()),
                        "rewards_max": float(rewards.max()), "rewards_min": float(rewards.min())})
        obs = np.concatenate([dataset.observations[s:e + 1], dataset.next_observations[e:e + 1]])
        _h5_col(g, "observations", obs)
        _h5_col(g, "actions", dataset.actions[s:e + 1])
        _h5_col(g, "rewards", rewards)
        _h5_col(g, "terminations", dataset.terminals[s:e + 1] > 0)
        trunc = dataset.timeouts[s:e + 1] > 0
        trunc[-1] |= not dataset.terminals[e] > 0  # every stored episode ends done
        _h5_col(g, "truncations", trunc)
        if info_keys:
          ig = g.create_group("infos")
          for k in info_keys:
            v = np.asarray(dataset.infos[k][s:e + 1])
            nxt = dataset.infos.get(f"next_{k}")
            if nxt is not None:
              last = np.asarray(nxt[e:e + 1], dtype=v.dtype)
            else:
              last = np.full((1,) + v.shape[1:], np.nan, np.float64)
            _h5_col(ig, k, np.concatenate([v, last]))
    meta = {
        "total_episodes": int(len(ends)),
        "total_steps": int(len(dataset)),
        "data_format": "hdf5",
        "jpeg_encoding": False,
        **_minari_spaces(dataset, env_id),
        "dataset_id": dataset_id,
        "minari_version": MINARI_VERSION,
        "algorithm_name": str(dataset.metadata.get("algorithm_name",
                                                   dataset.metadata.get("policy", "unknown"))),
        "author": ["jaxaug"],
        "author_email": [],
        "code_permalink": "",
        METADATA_KEY: to_jsonable({**dataset.metadata, "env_id": env_id}),
    }
    size = sum(os.path.getsize(os.path.join(data_dir, p)) for p in os.listdir(data_dir))
    meta["dataset_size"] = round(size / 1e6, 1)
    with open(os.path.join(data_dir, "metadata.json"), "w") as fh:
      json.dump(meta, fh)


def _h5_col(group: h5py.Group, key: str, data: np.ndarray) -> None:
  # Chunked and resizable along the first axis, as Minari's own writer creates them.
  data = np.asarray(data)
  group.create_dataset(key, data=data, chunks=True, maxshape=(None,) + data.shape[1:])
