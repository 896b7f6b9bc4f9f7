r"""Times save and load+validate of each dataset format on a synthetic episodic dataset.

  python experiments/bench_data_io.py --num_transitions=200000
"""

from __future__ import annotations

import os
import tempfile
import time

from absl import app, flags
import numpy as np

from jaxaug.data import OfflineDataset, load_dataset, save_d4rl_hdf5, save_minari, save_npz

_N = flags.DEFINE_integer("num_transitions", 200_000, "transitions (a multiple of 1000)")
_OBS = flags.DEFINE_integer("obs_dim", 17, "observation dim (HalfCheetah: 17)")
_ACT = flags.DEFINE_integer("act_dim", 6, "action dim (HalfCheetah: 6)")


def synthetic(n: int, obs_dim: int, act_dim: int, horizon: int = 1000) -> OfflineDataset:
  rng = np.random.default_rng(0)
  episodes = n // horizon
  states = rng.normal(size=(episodes, horizon + 1, obs_dim)).astype(np.float32)
  timeouts = np.zeros(n, np.float32)
  timeouts[horizon - 1::horizon] = 1
  return OfflineDataset(
      observations=states[:, :-1].reshape(n, obs_dim),
      next_observations=states[:, 1:].reshape(n, obs_dim),
      actions=rng.uniform(-1, 1, (n, act_dim)), rewards=rng.normal(size=n),
      terminals=np.zeros(n), timeouts=timeouts,
      infos={"qpos": rng.normal(size=(n, 9)).astype(np.float32),
             "qvel": rng.normal(size=(n, 9)).astype(np.float32)},
      metadata={"env_id": "HalfCheetah-v5"})


def _size(path: str) -> int:
  if os.path.isdir(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)
  return os.path.getsize(path)


def main(argv):
  del argv
  ds = synthetic(_N.value, _OBS.value, _ACT.value)
  with tempfile.TemporaryDirectory() as d:
    writers = (("npz", save_npz, os.path.join(d, "x.npz")),
               ("d4rl", save_d4rl_hdf5, os.path.join(d, "x.hdf5")),
               ("minari", lambda x, p: save_minari(x, p, "HalfCheetah-v5"), os.path.join(d, "m")))
    for fmt, save, path in writers:
      t = time.perf_counter()
      save(ds, path)
      t_save = time.perf_counter() - t
      t = time.perf_counter()
      got = load_dataset(f"{fmt}:{path}")
      t_load = time.perf_counter() - t
      print(f"{fmt}: save {t_save:.2f} s, load+validate {t_load:.2f} s, "
            f"{_size(path) / 1e6:.1f} MB, {len(got)} rows")


if __name__ == "__main__":
  app.run(main)
