r"""Writes a PLACEHOLDER embedded dataset: Hopper-v5 under a noisy biased random policy.

It exists so that `embedded:hopper-medium-replay` loads before the SAC-built datasets of the
same names replace it (metadata['placeholder'] is True). Each episode draws a constant action
bias b ~ U(-0.3, 0.3)^act_dim and a noise scale sigma ~ U(0.1, 1); actions are
clip(b + sigma * N(0, 1), -1, 1). infos hold qpos/qvel at each observation.

  python experiments/make_placeholder_embedded.py --num_transitions=20000
"""

from __future__ import annotations

import os

from absl import app, flags
import gymnasium as gym
import numpy as np

from jaxaug.data.dataset import OfflineDataset
from jaxaug.data.loaders import load_dataset, save_npz

_NAME = flags.DEFINE_string("name", "hopper-medium-replay", "embedded dataset name")
_ENV_ID = flags.DEFINE_string("env_id", "Hopper-v5", "gymnasium environment")
_NUM = flags.DEFINE_integer("num_transitions", 20_000, "transitions to collect")
_SEED = flags.DEFINE_integer("seed", 0, "seed of the environment and the policy")
_OUT = flags.DEFINE_string(
    "output_dir",
    os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "jaxaug", "embedded")),
    "directory of the embedded .npz files")


def collect(env_id: str, num_transitions: int, seed: int) -> OfflineDataset:
  env = gym.make(env_id)
  rng = np.random.default_rng(seed)
  act_dim = env.action_space.shape[0]
  high = env.action_space.high.astype(np.float32)
  cols = {k: [] for k in ("observations", "actions", "rewards", "next_observations",
                          "terminals", "timeouts", "qpos", "qvel")}
  episode = 0
  while len(cols["rewards"]) < num_transitions:
    obs, _ = env.reset(seed=seed + episode)
    bias = rng.uniform(-0.3, 0.3, act_dim)
    sigma = rng.uniform(0.1, 1.0)
    done = False
    while not done and len(cols["rewards"]) < num_transitions:
      data = env.unwrapped.data
      cols["qpos"].append(data.qpos.copy())
      cols["qvel"].append(data.qvel.copy())
      action = np.clip(bias + sigma * rng.standard_normal(act_dim), -1, 1) * high
      next_obs, reward, terminated, truncated, _ = env.step(action.astype(np.float32))
      # Collection stopping mid-episode also closes the episode (as a timeout).
      last = len(cols["rewards"]) + 1 == num_transitions
      for k, v in (("observations", obs), ("actions", action), ("rewards", reward),
                   ("next_observations", next_obs), ("terminals", terminated),
                   ("timeouts", (truncated or last) and not terminated)):
        cols[k].append(v)
      obs, done = next_obs, terminated or truncated
    episode += 1
  env.close()
  arrays = {k: np.asarray(v, np.float32) for k, v in cols.items()}
  infos = {"qpos": arrays.pop("qpos"), "qvel": arrays.pop("qvel")}
  return OfflineDataset(**arrays, infos=infos, metadata={
      "placeholder": True,
      "env_id": env_id,
      "policy": "noisy biased random (placeholder; to be replaced by SAC-built data)",
      "seed": seed,
      "num_episodes": episode,
      "max_action": float(high.max()),
      "episodic": True,
  })


def main(argv):
  del argv
  ds = collect(_ENV_ID.value, _NUM.value, _SEED.value)
  path = os.path.join(_OUT.value, f"{_NAME.value}.npz")
  save_npz(ds, path)
  check = load_dataset(f"npz:{path}")  # validates
  returns = check.episode_returns()
  print(f"wrote {path}: {len(check)} transitions, {len(returns)} episodes, "
        f"returns {returns.min():.1f}..{returns.max():.1f} (mean {returns.mean():.1f}), "
        f"{os.path.getsize(path) / 1e6:.2f} MB")


if __name__ == "__main__":
  app.run(main)
