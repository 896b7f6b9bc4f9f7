r"""DTQL's 2-D illustration (paper Sec. 3, Figs. 1-2): the trust region on a multi-modal bandit.

A one-state bandit whose behaviour actions are the paper's 25 Gaussians (5 x 5 grid over
[-10, 10]^2, std 0.3; actions bounded by 12). The reward is linear, r(a) = <a, u>, so the best
in-data mode is the one furthest along u, while the reward keeps growing *outside* the data
(towards the corner of the action box), which an unconstrained Q-maximiser would chase. DTQL
trains the diffusion BC policy, the critics and the one-step policy (the real agent,
jaxaug.agents.dtql, through the generic loop); the plot shows the trust-region loss landscape,
samples of the diffusion policy (50 Heun steps) and samples of the one-step policy.

The landscape is an expectation over the training noise (sigma, n); a few dozen draws leave it
noisy enough that the modes' ordering changes with the key. The panel uses `--grid_draws`
stratified, antithetic draws, and the script checks the modes' ordering with `--mode_draws`
draws under two keys (`check_mode_ordering`): two keys must agree on every pair of modes
except statistical ties (difference within 3 standard errors), at a standard error of at most
2% of each mode's loss.

  python experiments/dtql_toy.py --out=docs/figures/dtql_toy.png
"""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxaug.agents import dtql
from jaxaug.data.dataset import Transitions, sample_transitions
from jaxaug.train import mesh as mesh_lib
from jaxaug.train.loop import LoopConfig, run_training
from jaxaug.types import EnvSpec

MAX_ACTION = 12.0
SPEC = EnvSpec(obs_dim=1, act_dim=2, max_action=MAX_ACTION, env_id="toy-bandit")


@dataclasses.dataclass(frozen=True)
class ToyTask:
  """The paper's "25 Gaussians" behaviour data (5 x 5 grid over [-10, 10]^2, std 0.3) with a
  linear reward r(a) = reward_scale <a, u>, u a unit vector at `reward_angle` (default: towards
  the top-left corner, so the best in-data mode is (-10, 10) and the reward keeps growing
  outside the data, towards the corner (-12, 12) of the action box)."""

  grid_size: int = 5
  extent: float = 10.0
  mode_std: float = 0.3
  reward_angle: float = 3 * math.pi / 4
  reward_scale: float = 1.0
  num_points: int = 5000

  def mode_centers(self) -> np.ndarray:
    g = np.linspace(-self.extent, self.extent, self.grid_size)
    return np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)

  def reward_direction(self) -> np.ndarray:
    return np.array([math.cos(self.reward_angle), math.sin(self.reward_angle)])

  def reward(self, actions: np.ndarray) -> np.ndarray:
    return self.reward_scale * (actions @ self.reward_direction())

  def best_mode(self) -> np.ndarray:
    c = self.mode_centers()
    return c[np.argmax(self.reward(c))]


def make_dataset(task: ToyTask, seed: int = 0) -> Transitions:
  """One constant state (0); single-step episodes (terminal = 1), so Q(s, a) = r(a)."""
  rng = np.random.default_rng(seed)
  centers = task.mode_centers()
  idx = rng.integers(0, len(centers), task.num_points)
  a = centers[idx] + task.mode_std * rng.normal(size=(task.num_points, 2))
  a = np.clip(a, -MAX_ACTION, MAX_ACTION).astype(np.float32)
  n = task.num_points
  obs = np.zeros((n, 1), np.float32)
  return Transitions(obs, a, task.reward(a).astype(np.float32), obs, np.ones(n, np.float32),
                     np.zeros(n, np.float32))


def toy_agent_config(trust_region_weight: float = 1.0) -> ml_collections.ConfigDict:
  c = dtql.get_config()
  c.lr = 3e-3  # the official toy's learning rate (all three networks)
  c.critic_lr = 3e-3
  c.denoiser_hidden_dim = 128
  c.policy_hidden_dims = (64, 64)
  c.critic_hidden_dims = (64, 64)
  c.pretrain_steps = 500
  c.trust_region_weight = trust_region_weight
  c.num_candidates = 1
  return c


def train_toy(task: ToyTask = ToyTask(), num_steps: int = 2000, batch_size: int = 256,
              seed: int = 0, agent_config: ml_collections.ConfigDict | None = None):
  """Train DTQL on the toy bandit with the generic loop; returns (state, data)."""
  cfg = agent_config if agent_config is not None else toy_agent_config()
  data = make_dataset(task, seed)
  loop = LoopConfig(num_steps=num_steps, batch_size=batch_size, updates_per_dispatch=250,
                    log_every=num_steps, seed=seed)
  state, _ = run_training(cfg=loop, workdir=None, init_fn=lambda k: dtql.init(k, SPEC, cfg),
                          update_fn=dtql.update, sample_fn=sample_transitions, data=data,
                          mesh=mesh_lib.make_data_mesh(jax.devices()[:1]))
  return state, data


def policy_samples(state, n: int, key: jax.Array) -> np.ndarray:
  """n stochastic one-step policy actions at the toy's state."""
  return np.asarray(jax.jit(dtql.act, static_argnums=3)(state, jnp.zeros((n, 1)), key, False))


def diffusion_samples(state, n: int, key: jax.Array, num_steps: int = 50) -> np.ndarray:
  f = jax.jit(dtql.sample_diffusion_policy, static_argnums=3)
  return np.asarray(f(state, jnp.zeros((n, 1)), key, num_steps))


def tr_loss_at(state, actions: np.ndarray, key: jax.Array, num_draws: int = 256,
               return_stderr: bool = False):
  """Per-action trust-region loss (expectation over sigma / noise, `num_draws` draws); with
  `return_stderr` also its standard error."""
  a = jnp.asarray(actions, jnp.float32)
  f = jax.jit(dtql.trust_region_landscape, static_argnums=(4, 5))
  out = f(state, jnp.zeros((a.shape[0], 1)), a, key, num_draws, return_stderr)
  return tuple(np.asarray(x) for x in out) if return_stderr else np.asarray(out)


def check_mode_ordering(state, task: ToyTask, num_draws: int, keys=(101, 202),
                        max_rel_stderr: float = 0.02, z: float = 3.0) -> dict:
  """Do two keys give the same ordering of the modes by trust-region loss?

  `consistent` requires (a) resolution: every mode's standard error <= max_rel_stderr of its
  loss, and (b) no contradiction: every pair of modes the two keys order differently differs by
  less than z combined standard errors (a statistical tie, which no finite estimate orders).
  Also reports exact agreement and Spearman's rank correlation.
  """
  centers = task.mode_centers()
  est = [tr_loss_at(state, centers, jax.random.key(k), num_draws, return_stderr=True)
         for k in keys]
  (m0, s0), (m1, s1) = est
  rank = lambda x: np.argsort(np.argsort(x))
  r0, r1 = rank(m0), rank(m1)
  i, j = np.triu_indices(len(centers), 1)
  discordant = np.sign(m0[i] - m0[j]) != np.sign(m1[i] - m1[j])
  se = np.sqrt(np.maximum(s0[i], s1[i]) ** 2 + np.maximum(s0[j], s1[j]) ** 2)
  gap = np.maximum(np.abs(m0[i] - m0[j]), np.abs(m1[i] - m1[j]))
  contradictions = int(np.sum(discordant & (gap > z * se)))
  rel = float(np.max(np.concatenate([s0 / m0, s1 / m1])))
  n = len(centers)
  spearman = float(1 - 6 * np.sum((r0 - r1) ** 2) / (n * (n * n - 1)))
  return {"num_draws": num_draws, "order": np.argsort(m0).tolist(),
          "same_order": bool(np.array_equal(np.argsort(m0), np.argsort(m1))),
          "spearman": spearman, "discordant_pairs": int(discordant.sum()),
          "contradictions": contradictions, "max_rel_stderr": rel,
          "consistent": bool(rel <= max_rel_stderr and contradictions == 0),
          "mode_loss": m0.tolist()}


def plot(state, data: Transitions, task: ToyTask, path: str, seed: int = 0,
         grid_size: int = 49, grid_draws: int = 2048, mode_draws: int = 32768) -> dict:
  """Three panels: trust-region loss landscape, diffusion samples, one-step policy samples.

  Raises if the modes' ordering is not stable between two keys at `mode_draws` draws."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  k1, k2, k3 = jax.random.split(jax.random.key(seed + 1), 3)
  ordering = check_mode_ordering(state, task, mode_draws)
  if not ordering["consistent"]:
    raise RuntimeError(f"the trust-region loss ranks the modes differently under two keys at "
                       f"{mode_draws} draws: {ordering}; raise --mode_draws")
  g = np.linspace(-MAX_ACTION, MAX_ACTION, grid_size, dtype=np.float32)
  gx, gy = np.meshgrid(g, g)
  grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
  landscape, stderr = tr_loss_at(state, grid, k1, num_draws=grid_draws, return_stderr=True)
  landscape, stderr = landscape.reshape(gx.shape), stderr.reshape(gx.shape)
  diff = diffusion_samples(state, 1000, k2)
  pol = policy_samples(state, 1000, k3)
  acts = np.asarray(data.actions)

  fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
  im = axes[0].contourf(gx, gy, np.log10(landscape), levels=30, cmap="viridis")
  fig.colorbar(im, ax=axes[0], label="log10 trust-region loss")
  axes[0].scatter(acts[:500, 0], acts[:500, 1], s=2, c="white", alpha=0.4)
  axes[0].set_title(f"Diffusion trust-region loss landscape ({grid_draws} draws)")
  rew = task.reward(grid).reshape(gx.shape)
  for ax, pts, title, color in ((axes[1], diff, "Diffusion BC policy (50 Heun steps)", "tab:blue"),
                                (axes[2], pol, "One-step DTQL policy", "tab:red")):
    ax.contourf(gx, gy, rew, levels=20, cmap="Greys", alpha=0.5)
    ax.scatter(acts[:, 0], acts[:, 1], s=2, c="k", alpha=0.15, label="data")
    ax.scatter(pts[:, 0], pts[:, 1], s=4, c=color, alpha=0.5, label="samples")
    ax.set_title(title)
  u = task.reward_direction()
  axes[2].annotate("", xy=6 * u, xytext=(0, 0), arrowprops=dict(arrowstyle="->", color="g"))
  axes[2].text(6 * u[0], 6 * u[1] - 1.2, "reward", color="g")
  for ax in axes:
    ax.set_xlim(-MAX_ACTION, MAX_ACTION)
    ax.set_ylim(-MAX_ACTION, MAX_ACTION)
    ax.set_aspect("equal")
    ax.set_xlabel("action dim 1")
    ax.set_ylabel("action dim 2")
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=90)
  plt.close(fig)
  os.replace(tmp, path)
  best = task.best_mode()
  return {"frac_policy_near_best_mode": float(np.mean(np.linalg.norm(pol - best, axis=1) < 1.0)),
          "policy_mean": pol.mean(0).tolist(), "best_mode": best.tolist(),
          "landscape_max_rel_stderr": float(np.max(stderr / landscape)),
          "mode_ordering": {k: v for k, v in ordering.items() if k != "mode_loss"}}


def main(argv):
  del argv
  from absl import flags
  f = flags.FLAGS
  task = ToyTask()
  state, data = train_toy(task, num_steps=f.num_steps, seed=f.seed,
                          agent_config=toy_agent_config(f.trust_region_weight))
  print(plot(state, data, task, f.out, f.seed, f.grid_size, f.grid_draws, f.mode_draws))
  print("wrote", f.out)


if __name__ == "__main__":
  from absl import app, flags
  flags.DEFINE_string("out", "/tmp/dtql_toy.png", "output PNG")
  flags.DEFINE_integer("num_steps", 2000, "training steps (first 500: BC + critic only)")
  flags.DEFINE_integer("seed", 0, "seed")
  flags.DEFINE_float("trust_region_weight", 1.0, "alpha")
  flags.DEFINE_integer("grid_size", 49, "landscape grid points per axis")
  flags.DEFINE_integer("grid_draws", 2048, "(sigma, noise) draws per landscape point")
  flags.DEFINE_integer("mode_draws", 32768, "draws for the mode-ordering check at the 25 modes")
  app.run(main)
