"""Suite environments with the D4RL files' flat observation layout (docs/suites.md).

Each factory builds the maintained gymnasium(-robotics) / metaworld environment and wraps it so
jaxaug sees what a policy trained on the D4RL file saw: a flat float32 vector, dimension by
dimension in the file's order, in the file's coordinate frame, with D4RL's evaluation protocol
(start/goal sampling, success radius, time limit) where it differs from the package's.

AntMaze. D4RL places maze cell (i, j) at ((j - j_R) s, (i - i_R) s) (s = 4, R the start cell):
y grows with the row. gymnasium-robotics places it at ((j - (m-1)/2) s, ((n-1)/2 - i) s): y
shrinks with the row, a mirror image. We therefore hand gymnasium-robotics the D4RL map with
its rows reversed; the walls then lie exactly where D4RL's do up to a translation, which the
wrapper adds to the torso x, y. Observation = [x, y (D4RL frame), qpos[2:15], qvel[:14]] = 29,
D4RL's `expose_all_qpos` layout. Start: the R cell plus D4RL's reset noise (U(-0.1, 0.1) on
qpos, N(0, 0.1) on qvel); goal: the G cell plus D4RL's goal noise, redrawn every episode
(antmaze v2 evaluation); reward 1 and the episode ends when the torso is within 0.5 of the goal.

Maze2D. D4RL's point-mass qpos is (row, column) in cell units, offset by -0.2 (its body sits
at (1.2, 1.2) while cell (i, j) is centred at (i + 1, j + 1)); gymnasium-robotics uses
x = column, y = -row, centred on the maze. The two frames differ by a rotation of 90 degrees (a
proper rotation, so the isotropic point mass behaves identically) and a translation: the
wrapper maps observations into D4RL's frame and actions back. Reward 1 per step within 0.5 of
the single goal (D4RL sparse reward), no termination; start anywhere free plus U(-0.1, 0.1).

FrankaKitchen. gymnasium-robotics' observation is robot qpos(9), robot qvel(9), object
qpos(21), object qvel(20); D4RL's is robot qpos(9), object qpos(21), goal(30), where the goal
vector holds each task's target joint values at the task's qpos indices and zeros elsewhere.

Adroit and Meta-World observations are already flat and in the D4RL / Meta-World order.
"""

from __future__ import annotations

import numpy as np

from jaxaug.envs.suites import compat
from jaxaug.envs.suites.specs import ANT_MAZE_SCALE, SuiteEnv, suite_env

GOAL_RADIUS = 0.5  # D4RL's success radius for AntMaze and Maze2D (gymnasium-robotics: 0.45)


def _cells(rows: tuple[str, ...], chars: str) -> list[tuple[int, int]]:
  return [(i, j) for i, row in enumerate(rows) for j, c in enumerate(row) if c in chars]


def _gym_map(rows: tuple[str, ...]) -> list[list]:
  """A gymnasium-robotics maze_map (1 wall, 0 free) of D4RL map rows."""
  return [[1 if c == "#" else 0 for c in row] for row in rows]


def _base_wrapper():
  import gymnasium as gym

  class _Flat(gym.Wrapper):
    """Common parts: a flat float32 Box observation space and a seeded numpy generator."""

    def __init__(self, env, spec: SuiteEnv):
      super().__init__(env)
      self.suite_spec = spec
      self.observation_space = gym.spaces.Box(-np.inf, np.inf, (spec.obs_dim,), np.float32)
      self._rng = np.random.default_rng()

    def _seed(self, seed):
      if seed is not None:
        self._rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5017E]))

  return _Flat


def _antmaze(spec: SuiteEnv, **kwargs):
  import gymnasium as gym
  compat.require("gymnasium_robotics")
  rows = spec.maze
  n, m = len(rows), len(rows[0])
  (ri, rj), = _cells(rows, "R")
  (gi, gj), = _cells(rows, "G")
  s = ANT_MAZE_SCALE
  # D4RL frame = gymnasium-robotics frame (rows reversed) + offset.
  offset = np.array([((m - 1) / 2 - rj) * s, ((n - 1) / 2 - ri) * s])
  env = gym.make(spec.gym_id, maze_map=_gym_map(rows[::-1]), continuing_task=True,
                 reset_target=False, include_cfrc_ext_in_observation=False,
                 max_episode_steps=spec.max_episode_steps, **kwargs)

  class AntMazeD4RL(_base_wrapper()):

    def _obs(self, d):
      return np.concatenate([d["achieved_goal"] + offset, d["observation"]]).astype(np.float32)

    def reset(self, *, seed=None, options=None):
      self._seed(seed)
      _, info = self.env.reset(seed=seed, options=options)
      u = self.env.unwrapped
      ant = u.ant_env
      # D4RL start: the R cell (origin of its frame) plus the ant's reset noise.
      qpos = ant.init_qpos.copy()
      qpos[:2] = -offset
      qpos = qpos + self._rng.uniform(-0.1, 0.1, qpos.shape)
      qvel = ant.init_qvel + self._rng.normal(0.0, 0.1, ant.init_qvel.shape)
      ant.set_state(qpos, qvel)
      # D4RL goal: the G cell + U(0, s/4) + U(0, 0.5) s/4 per coordinate, clipped at 0.
      goal = np.array([(gj - rj) * s, (gi - ri) * s])
      goal = goal + self._rng.uniform(0, s / 4, 2) + self._rng.uniform(0, 0.5, 2) * s / 4
      self.goal_d4rl = np.maximum(goal, 0.0)
      u.goal = self.goal_d4rl - offset
      u.update_target_site_pos()
      obs = self._obs(u._get_obs(ant._get_obs()))
      info = {**info, "success": False, "goal": self.goal_d4rl.copy()}
      return obs, info

    def step(self, action):
      d, _, _, truncated, info = self.env.step(action)
      obs = self._obs(d)
      success = bool(np.linalg.norm(obs[:2] - self.goal_d4rl) <= GOAL_RADIUS)
      info = {**info, "success": success, "goal": self.goal_d4rl.copy()}
      return obs, float(success), success, truncated, info

  return AntMazeD4RL(env, spec)


def _maze2d(spec: SuiteEnv, **kwargs):
  import gymnasium as gym
  compat.require("gymnasium_robotics")
  rows = spec.maze
  n, m = len(rows), len(rows[0])
  # qpos_d = (c0 - y_g, c1 + x_g); qvel_d = (-vy_g, vx_g); action_g = (a_d[1], -a_d[0]).
  c0, c1 = (n - 1) / 2 - 0.2, (m - 1) / 2 - 0.2
  goal_d = np.array(_cells(rows, "G")[0], np.float64)
  free = np.array(_cells(rows, "OG"), np.float64)
  env = gym.make(spec.gym_id, maze_map=_gym_map(rows), continuing_task=True, reset_target=False,
                 max_episode_steps=spec.max_episode_steps, **kwargs)

  def to_d4rl(o):
    return np.array([c0 - o[1], c1 + o[0], -o[3], o[2]], np.float32)

  class Maze2dD4RL(_base_wrapper()):

    def reset(self, *, seed=None, options=None):
      self._seed(seed)
      _, info = self.env.reset(seed=seed, options=options)
      u = self.env.unwrapped
      # D4RL reset: a uniformly drawn free cell + U(-0.1, 0.1); qvel N(0, 0.1).
      qpos_d = free[self._rng.integers(len(free))] + self._rng.uniform(-0.1, 0.1, 2)
      qvel_d = self._rng.normal(0.0, 0.1, 2)
      u.point_env.set_state(np.array([qpos_d[1] - c1, c0 - qpos_d[0]]),
                            np.array([qvel_d[1], -qvel_d[0]]))
      u.goal = np.array([goal_d[1] - c1, c0 - goal_d[0]])
      u.update_target_site_pos()
      obs = to_d4rl(u.point_env._get_obs()[0])  # (obs, info) in gymnasium-robotics
      return obs, {**info, "success": False}

    def step(self, action):
      a = np.asarray(action, np.float64)
      d, _, _, truncated, info = self.env.step(np.array([a[1], -a[0]]))
      obs = to_d4rl(d["observation"])
      success = bool(np.linalg.norm(obs[:2] - goal_d) <= GOAL_RADIUS)
      return obs, float(success), False, truncated, {**info, "success": success}

  return Maze2dD4RL(env, spec)


def _kitchen(spec: SuiteEnv, **kwargs):
  import gymnasium as gym
  compat.require("gymnasium_robotics")
  from gymnasium_robotics.envs.franka_kitchen import kitchen_env
  goal = np.zeros(30, np.float32)
  for task in spec.tasks:
    goal[kitchen_env.OBS_ELEMENT_INDICES[task]] = kitchen_env.OBS_ELEMENT_GOALS[task]
  env = gym.make(spec.gym_id, tasks_to_complete=list(spec.tasks),
                 max_episode_steps=spec.max_episode_steps, **kwargs)

  def flat(d):
    o = d["observation"]
    return np.concatenate([o[0:9], o[18:39], goal]).astype(np.float32)

  class KitchenD4RL(_base_wrapper()):

    def reset(self, *, seed=None, options=None):
      d, info = self.env.reset(seed=seed, options=options)
      return flat(d), {**info, "success": False}

    def step(self, action):
      d, reward, terminated, truncated, info = self.env.step(action)
      done = len(info.get("episode_task_completions", ())) == len(spec.tasks)
      return flat(d), float(reward), terminated, truncated, {**info, "success": done}

  return KitchenD4RL(env, spec)


def _flat_env(spec: SuiteEnv, env, before_reset=None):
  """Flat float32 observations; `before_reset(rng)` runs first on every reset, with a generator
  seeded by the reset seed."""

  class FlatFloat32(_base_wrapper()):

    def reset(self, *, seed=None, options=None):
      self._seed(seed)
      if before_reset is not None:
        before_reset(self._rng)
      o, info = self.env.reset(seed=seed, options=options)
      return np.asarray(o, np.float32), info

    def step(self, action):
      o, reward, terminated, truncated, info = self.env.step(action)
      if "success" in info:
        info = {**info, "success": bool(info["success"])}
      return np.asarray(o, np.float32), float(reward), terminated, truncated, info

  return FlatFloat32(env, spec)


def _adroit(spec: SuiteEnv, **kwargs):
  import gymnasium as gym
  compat.require("gymnasium_robotics")
  return _flat_env(spec, gym.make(spec.gym_id, max_episode_steps=spec.max_episode_steps,
                                  **kwargs))


def sparse_success_reward(env):
  """ATraDiff's Meta-World reward (its App. B.2): 1 when the step's info says success, else 0;
  the first success ends the episode (terminated), so a return is 0 or 1 = the episode's
  success, the per-episode "return" the paper's Meta-World panels plot. The time limit is
  unchanged. Meta-World's own success criterion decides (info['success'])."""
  import gymnasium as gym

  class SparseSuccessReward(gym.Wrapper):

    def step(self, action):
      o, _, terminated, truncated, info = self.env.step(action)
      success = bool(info.get("success", False))
      return o, float(success), bool(terminated or success), truncated, info

  return SparseSuccessReward(env)


# MT1's 50 goal variations are drawn from this seed, so every env of a task has the same 50.
METAWORLD_BENCHMARK_SEED = 0


def _metaworld(spec: SuiteEnv, seed=None, **kwargs):
  """Meta-World MT1 for one task. metaworld draws the 50 goal variations from the benchmark
  seed (random when None) and picks one per reset from the env's generator *before* the reset
  seeds it, so episodes would not follow reset(seed). Here the variations come from a fixed
  seed and reset(seed) picks one with a generator seeded by that seed: an episode depends on
  (task, seed) alone, as in the other suites."""
  import gymnasium as gym
  compat.require("metaworld")
  from metaworld.wrappers import RandomTaskSelectWrapper
  from jaxaug.envs.suites.specs import metaworld_sparse, metaworld_task
  env = gym.make("Meta-World/MT1", env_name=f"{metaworld_task(spec.env_id)}-v3",
                 seed=METAWORLD_BENCHMARK_SEED, **kwargs)
  selector = env
  while not isinstance(selector, RandomTaskSelectWrapper):
    selector = selector.env
  selector.toggle_sample_tasks_on_reset(False)

  def pick_task(rng):
    selector.unwrapped.set_task(selector.tasks[int(rng.integers(len(selector.tasks)))])

  env = _flat_env(spec, env, before_reset=pick_task)
  return sparse_success_reward(env) if metaworld_sparse(spec.env_id) else env


_FACTORIES = {"antmaze": _antmaze, "maze2d": _maze2d, "kitchen": _kitchen, "adroit": _adroit}


def make_suite_env(env_id: str, seed: int | None = None, **kwargs):
  """A single suite env (canonical id) with the D4RL layout; reset once with `seed` if given."""
  spec = suite_env(env_id)
  if spec.suite == "metaworld":
    env = _metaworld(spec, seed=seed, **kwargs)
  else:
    env = _FACTORIES[spec.suite](spec, **kwargs)
  if seed is not None:
    env.reset(seed=int(seed))
    env.action_space.seed(int(seed))
  return env


def make_suite_vector_env(env_id: str, num_envs: int, seed: int | None = None, **kwargs):
  """A synchronous vector env of `num_envs` suite envs (sub-env i reset with seed + i)."""
  import gymnasium as gym
  fns = [lambda i=i: make_suite_env(env_id, seed=None if seed is None else seed + i, **kwargs)
         for i in range(num_envs)]
  env = gym.vector.SyncVectorEnv(fns)
  if seed is not None:
    env.reset(seed=int(seed))
    env.action_space.seed(int(seed))
  return env
