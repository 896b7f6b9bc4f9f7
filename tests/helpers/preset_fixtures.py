"""Small stand-ins for the real D4RL and Minari dataset files, named and laid out as those are.

The preset-matrix test (tests/test_preset_matrix.py) points every preset's dataset spec at files
written here, so a preset that names a file the real suites do not have (wrong version suffix, a
typo, a dataset that does not exist) fails there, while the content stays small and synthetic.

D4RL layout (one hdf5 file, `<data_dir>/<name>-v<k>.hdf5`): `observations`, `actions`,
`rewards`, `terminals`, `timeouts` at the root, `infos/qpos`, `infos/qvel` (and `infos/goal` on
the maze tasks), `metadata/*`. As in the real files, only the Gym-MuJoCo v2 files carry
`next_observations`; AntMaze, Adroit (pen), Kitchen and Maze2D files do not (the loader rebuilds
them). Version suffixes are the ones D4RL publishes: Gym-MuJoCo and AntMaze -v2, Adroit -v1,
Kitchen -v0, Maze2D -v1.

Minari layout (a directory `<root>/<namespace>/<env>/<name>-v0/data/` holding `main_data.hdf5`
with one `episode_<i>` group per episode (T+1 observations, T actions, rewards, terminations,
truncations, infos) and `metadata.json`), as written by minari 0.5.

Observation/action sizes are those of the environments jaxaug evaluates on (Ant: the 27-dim
observation without contact forces that D4RL uses, jaxaug.envs.registry).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import h5py
import numpy as np


@dataclasses.dataclass(frozen=True)
class Suite:
  obs_dim: int
  act_dim: int
  version: int  # D4RL file version suffix
  next_observations: bool  # the D4RL file stores next_observations
  nq: int
  nv: int
  goal: bool = False  # infos/goal (maze tasks)
  qualities: tuple[str, ...] = ()


_LOCOMOTION_QUALITIES = ("random", "medium", "medium-replay", "medium-expert", "expert",
                         "full-replay")
SUITES: dict[str, Suite] = {
    "hopper": Suite(11, 3, 2, True, 6, 6, qualities=_LOCOMOTION_QUALITIES),
    "halfcheetah": Suite(17, 6, 2, True, 9, 9, qualities=_LOCOMOTION_QUALITIES),
    "walker2d": Suite(17, 6, 2, True, 9, 9, qualities=_LOCOMOTION_QUALITIES),
    "ant": Suite(27, 8, 2, True, 15, 14, qualities=_LOCOMOTION_QUALITIES),
    "antmaze": Suite(29, 8, 2, False, 15, 14, goal=True, qualities=(
        "umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play",
        "large-diverse")),
    "pen": Suite(45, 24, 1, False, 30, 30, qualities=("human", "cloned", "expert")),
    "door": Suite(39, 28, 1, False, 30, 30, qualities=("human", "cloned", "expert")),
    "kitchen": Suite(60, 9, 0, False, 30, 29, qualities=("complete", "partial", "mixed")),
    "maze2d": Suite(4, 2, 1, False, 2, 2, goal=True, qualities=("umaze", "medium", "large")),
    # Meta-World publishes no offline data: its presets (configs/atradiff.py) read the file
    # experiments/build_dataset.py writes, metaworld-<task>-v3[-sparse].hdf5 (nq/nv of push).
    "metaworld": Suite(39, 4, 3, False, 16, 15),
}
_METAWORLD_FILE = re.compile(r"metaworld-([a-z0-9-]+?)-v3(-sparse)?\.hdf5")

# Minari dataset ids whose spaces are the same flat Boxes as above.
MINARI_NAMESPACES = {"mujoco": ("hopper", "halfcheetah", "walker2d", "ant")}
MINARI_QUALITIES = ("simple", "medium", "expert")


def split_d4rl_name(name: str) -> tuple[str, str]:
  """'hopper-medium-replay' -> ('hopper', 'medium-replay'); ValueError for unknown datasets."""
  env, _, quality = name.partition("-")
  suite = SUITES.get(env)
  if suite is None or quality not in suite.qualities:
    known = ", ".join(f"{e}-{{{','.join(s.qualities)}}}" for e, s in SUITES.items())
    raise ValueError(f"{name!r} is not a D4RL dataset jaxaug knows (known: {known})")
  return env, quality


def d4rl_filename(name: str) -> str:
  """The file name D4RL downloads for dataset `name` ('pen-human' -> 'pen-human-v1.hdf5')."""
  env, _ = split_d4rl_name(name)
  return f"{name}-v{SUITES[env].version}.hdf5"


def parse_d4rl_filename(filename: str) -> tuple[str, str]:
  """'hopper-medium-v2.hdf5' -> ('hopper', 'medium'); ValueError naming the expected name."""
  mw = _METAWORLD_FILE.fullmatch(os.path.basename(filename))
  if mw:
    return "metaworld", mw.group(1) + (mw.group(2) or "")
  m = re.fullmatch(r"(.+)-v(\d+)\.hdf5", os.path.basename(filename))
  if not m:
    raise ValueError(f"{filename!r}: D4RL files are named <dataset>-v<k>.hdf5")
  env, quality = split_d4rl_name(m.group(1))
  expected = d4rl_filename(m.group(1))
  if os.path.basename(filename) != expected:
    raise ValueError(f"{filename!r}: D4RL publishes this dataset as {expected!r}")
  return env, quality


def _episode_lengths(env: str, rng: np.random.Generator, total: int) -> list[int]:
  lengths, n = [], 0
  while n < total:
    ln = int(rng.integers(48, 160))
    lengths.append(ln)
    n += ln
  return lengths


def synthetic_episodes(env: str, seed: int = 0, total: int = 1200) -> dict[str, np.ndarray]:
  """Flat D4RL-style arrays: episodes of 48-159 steps, in-episode next_obs = next row's obs.

  Terminals follow the suite: Hopper/Walker2d/Ant episodes end by termination or timeout,
  HalfCheetah, pen and Maze2D only by timeout, AntMaze marks a terminal where the sparse goal
  reward is earned and goes on (as D4RL's AntMaze does), Kitchen episodes end terminal.
  """
  suite = SUITES[env]
  rng = np.random.default_rng(seed)
  obs_l, next_l, act_l, rew_l, term_l, tout_l, qpos_l, qvel_l = ([] for _ in range(8))
  for i, ln in enumerate(_episode_lengths(env, rng, total)):
    states = rng.normal(size=(ln + 1, suite.obs_dim)).astype(np.float32)
    actions = np.tanh(rng.normal(size=(ln, suite.act_dim))).astype(np.float32)
    terminals = np.zeros(ln, bool)
    timeouts = np.zeros(ln, bool)
    if env in ("antmaze", "metaworld"):  # sparse success reward, terminal at success
      rewards = (rng.random(ln) < 0.05).astype(np.float32)
      terminals[:] = rewards > 0
      timeouts[-1] = not terminals[-1]
    elif env == "maze2d":
      rewards = (rng.random(ln) < 0.1).astype(np.float32)
      timeouts[-1] = True
    elif env == "kitchen":
      rewards = rng.integers(0, 5, ln).astype(np.float32)
      terminals[-1] = True
    else:
      rewards = (rng.normal(size=ln) + 1.0 + 0.3 * i).astype(np.float32)
      if env in ("hopper", "walker2d", "ant") and i % 2 == 0:
        terminals[-1] = True
      else:
        timeouts[-1] = True
    obs_l.append(states[:-1])
    next_l.append(states[1:])
    act_l.append(actions)
    rew_l.append(rewards)
    term_l.append(terminals)
    tout_l.append(timeouts)
    qpos_l.append(rng.normal(size=(ln, suite.nq)))
    qvel_l.append(rng.normal(size=(ln, suite.nv)))
  out = {"observations": np.concatenate(obs_l), "next_observations": np.concatenate(next_l),
         "actions": np.concatenate(act_l), "rewards": np.concatenate(rew_l),
         "terminals": np.concatenate(term_l), "timeouts": np.concatenate(tout_l),
         "infos/qpos": np.concatenate(qpos_l), "infos/qvel": np.concatenate(qvel_l)}
  if suite.goal:
    out["infos/goal"] = np.tile(rng.normal(size=(1, 2)), (len(out["rewards"]), 1))
  return out


def write_d4rl(path: str, seed: int = 0) -> str:
  """Writes a D4RL-layout stand-in at `path` (its file name decides the suite). Returns path."""
  env, quality = parse_d4rl_filename(path)
  suite = SUITES[env]
  arrays = synthetic_episodes(env, seed)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with h5py.File(path, "w") as f:
    for key in ("observations", "actions", "rewards", "terminals", "timeouts"):
      f.create_dataset(key, data=arrays[key])
    if suite.next_observations:
      f.create_dataset("next_observations", data=arrays["next_observations"])
    for key, value in arrays.items():
      if key.startswith("infos/"):
        f.create_dataset(key, data=value)
    f.create_dataset("metadata/algorithm", data=np.bytes_("synthetic"))
    f.create_dataset("metadata/dataset_name", data=np.bytes_(f"{env}-{quality}"))
  return path


def parse_minari_path(path: str) -> tuple[str, str, str]:
  """'.../mujoco/hopper/medium-v0' -> ('mujoco', 'hopper', 'medium'); ValueError otherwise."""
  parts = os.path.normpath(path).split(os.sep)
  if parts and parts[-1] == "data":
    parts = parts[:-1]
  if len(parts) < 3:
    raise ValueError(f"{path!r}: Minari datasets live at <root>/<namespace>/<env>/<name>-v<k>")
  namespace, env, leaf = parts[-3:]
  m = re.fullmatch(r"(.+)-v\d+", leaf)
  if namespace not in MINARI_NAMESPACES or env not in MINARI_NAMESPACES[namespace] or not m \
      or m.group(1) not in MINARI_QUALITIES:
    known = ", ".join(f"{ns}/<{'|'.join(envs)}>/<{'|'.join(MINARI_QUALITIES)}>-v0"
                      for ns, envs in MINARI_NAMESPACES.items())
    raise ValueError(f"{path!r}: not a Minari dataset id this fixture knows ({known})")
  return namespace, env, m.group(1)


_GYM_IDS = {"hopper": "Hopper-v5", "halfcheetah": "HalfCheetah-v5", "walker2d": "Walker2d-v5",
            "ant": "Ant-v5"}


def write_minari(path: str, seed: int = 0) -> str:
  """Writes a Minari 0.5 dataset directory at `path` (<root>/<namespace>/<env>/<name>-v0)."""
  namespace, env, quality = parse_minari_path(path)
  if os.path.basename(os.path.normpath(path)) == "data":
    path = os.path.dirname(os.path.normpath(path))
  suite = SUITES[env]
  arrays = synthetic_episodes(env, seed)
  ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"])
  data_dir = os.path.join(path, "data")
  os.makedirs(data_dir, exist_ok=True)
  start = 0
  with h5py.File(os.path.join(data_dir, "main_data.hdf5"), "w") as f:
    for i, end in enumerate(ends):
      sl = slice(start, end + 1)
      g = f.create_group(f"episode_{i}")
      g.attrs.update({"id": i, "total_steps": int(end + 1 - start), "seed": i})
      obs = np.concatenate([arrays["observations"][sl], arrays["next_observations"][end:end + 1]])
      g.create_dataset("observations", data=obs.astype(np.float64))
      g.create_dataset("actions", data=arrays["actions"][sl])
      g.create_dataset("rewards", data=arrays["rewards"][sl].astype(np.float64))
      g.create_dataset("terminations", data=arrays["terminals"][sl])
      g.create_dataset("truncations", data=arrays["timeouts"][sl])
      for key in ("qpos", "qvel"):
        v = arrays[f"infos/{key}"][sl]
        g.create_dataset(f"infos/{key}", data=np.concatenate([v, v[-1:]]))
      start = end + 1

  def box(dim, low, high, dtype):
    return json.dumps({"type": "Box", "dtype": dtype, "shape": [dim], "low": [low] * dim,
                       "high": [high] * dim})

  env_spec = json.dumps({"id": _GYM_IDS[env], "max_episode_steps": 1000, "kwargs": {}})
  meta = {"total_episodes": int(len(ends)), "total_steps": int(len(arrays["rewards"])),
          "data_format": "hdf5", "dataset_id": f"{namespace}/{env}/{quality}-v0",
          "algorithm_name": "synthetic", "minari_version": "0.5.4", "env_spec": env_spec,
          "eval_env_spec": env_spec,
          "observation_space": box(suite.obs_dim, -np.inf, np.inf, "float64"),
          "action_space": box(suite.act_dim, -1.0, 1.0, "float32")}
  with open(os.path.join(data_dir, "metadata.json"), "w") as fh:
    json.dump(meta, fh)
  return path
