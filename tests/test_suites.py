"""The papers' suites beyond locomotion (jaxaug/envs/suites, docs/suites.md).

Per suite: name resolution and specs, hand-computed normalised scores (no simulator needed);
with the `suites` extra: env creation, a rollout, the flat observation checked against the
simulator state by hand, the D4RL geometry (walls, goal, frame), a built D4RL-layout file that
loads and validates, a layout mismatch naming both layouts, and a tiny offline run (IQL) on the
built file that evaluates in the environment. Tests that need a package of the extra are
skipped, with the install line, only when that package is not installed.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from jaxaug import envs
from jaxaug.envs import suites
from jaxaug.envs.suites import compat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _need(package):
  if not suites.available(package):
    pytest.skip(f"needs {package} (install: {compat.INSTALL_HINT})")


robotics = pytest.fixture(lambda: _need("gymnasium_robotics"))
metaworld_pkg = pytest.fixture(lambda: _need("metaworld"))


# --------------------------------------------------------------------- no simulator needed


@pytest.mark.parametrize("name, env_id, dims", [
    ("antmaze-umaze-v2", "antmaze-umaze", (29, 8)),
    ("antmaze-umaze-diverse-v2", "antmaze-umaze", (29, 8)),
    ("antmaze-medium-play-v2", "antmaze-medium", (29, 8)),
    ("antmaze-medium-diverse-v2", "antmaze-medium", (29, 8)),
    ("antmaze-large-play-v2", "antmaze-large", (29, 8)),
    ("antmaze-large-diverse-v2", "antmaze-large", (29, 8)),
    ("D4RL/antmaze/large-diverse-v1", "antmaze-large", (29, 8)),
    ("maze2d-umaze-v1", "maze2d-umaze", (4, 2)),
    ("maze2d-medium-v1", "maze2d-medium", (4, 2)),
    ("/data/d4rl/maze2d-large-v1.hdf5", "maze2d-large", (4, 2)),
    ("D4RL/pointmaze/medium-dense-v2", "maze2d-medium", (4, 2)),
    ("kitchen-complete-v0", "kitchen-microwave-kettle-light-slider", (60, 9)),
    ("kitchen-partial-v0", "kitchen-microwave-kettle-light-slider", (60, 9)),
    ("kitchen-mixed-v0", "kitchen-microwave-kettle-bottomburner-light", (60, 9)),
    ("D4RL/kitchen/mixed-v2", "kitchen-microwave-kettle-bottomburner-light", (60, 9)),
    ("pen-human-v1", "AdroitHandPen-v1", (45, 24)),
    ("pen-cloned-v1", "AdroitHandPen-v1", (45, 24)),
    ("D4RL/pen/human-v2", "AdroitHandPen-v1", (45, 24)),
    ("door-human-v1", "AdroitHandDoor-v1", (39, 28)),
    ("hammer-cloned-v1", "AdroitHandHammer-v1", (46, 26)),
    ("relocate-expert-v1", "AdroitHandRelocate-v1", (39, 30)),
    ("Meta-World/reach-v3", "Meta-World/reach-v3", (39, 4)),
    ("metaworld/drawer-open", "Meta-World/drawer-open-v3", (39, 4)),
])
def test_names_resolve_to_suite_envs(name, env_id, dims):
  assert envs.resolve_env_id(name) == env_id
  spec = envs.env_spec(name)
  assert (spec.env_id, spec.obs_dim, spec.act_dim) == (env_id, *dims)
  # The documented layout adds up to the observation size.
  assert sum(n for _, n in suites.suite_env(env_id).layout) == dims[0]


def test_locomotion_names_unchanged_and_unknown_suite_names_rejected():
  assert envs.resolve_env_id("ant-medium-v2") == "Ant-v5"  # 'antmaze' does not catch 'ant'
  assert envs.resolve_env_id("hopper-medium-replay-v2") == "Hopper-v5"
  for bad in ("antmaze-huge-v2", "kitchen-everything-v0", "pen-humanoid-v1"):
    with pytest.raises(ValueError, match="suite dataset/environment name"):
      envs.resolve_env_id(bad)


def test_normalized_scores_hand_computed():
  # AntMaze: return 0/1 (goal reached) on references (0, 1): success x 100.
  assert envs.normalized_score("antmaze-large-diverse-v2", 1.0) == pytest.approx(100.0)
  assert envs.normalized_score("antmaze-umaze-v2", np.array([0.0, 1.0, 1.0, 1.0])).mean() == \
      pytest.approx(75.0)
  # Kitchen: tasks completed / 4 x 100.
  assert envs.normalized_score("kitchen-mixed-v0", 3.0) == pytest.approx(75.0)
  assert envs.normalized_score("kitchen-complete-v0", 4.0) == pytest.approx(100.0)
  # Maze2D umaze: 100 (R - 23.85) / (161.86 - 23.85); R = 92.855 is half way.
  assert envs.normalized_score("maze2d-umaze-v1", 92.855) == pytest.approx(50.0)
  assert envs.normalized_score("maze2d-large-v1", 273.99) == pytest.approx(100.0)
  assert envs.normalized_score("maze2d-medium-v1", 13.13) == pytest.approx(0.0)
  # Adroit pen: D4RL's (96.262799, 3076.8331017826877).
  assert envs.normalized_score("pen-human-v1", 96.262799) == pytest.approx(0.0, abs=1e-9)
  assert envs.normalized_score("pen-human-v1", (96.262799 + 3076.8331017826877) / 2) == \
      pytest.approx(50.0)
  assert envs.normalized_score("door-human-v1", 2880.5693087298737) == pytest.approx(100.0)
  # Meta-World: success rate, no reference returns.
  assert envs.scored_by_success("Meta-World/reach-v3")
  np.testing.assert_allclose(envs.episode_scores("Meta-World/reach-v3", [523.0, 12.0],
                                                 [True, False]), [100.0, 0.0])
  with pytest.raises(ValueError, match="success rate"):
    envs.normalized_score("Meta-World/reach-v3", 100.0)
  # Locomotion is untouched by the success flags.
  assert envs.episode_scores("hopper", 3234.3, False) == pytest.approx(100.0)


def test_layout_mismatch_names_both_layouts():
  envs.check_dataset_layout("antmaze-umaze-v2", 29, 8)  # lines up: no error
  with pytest.raises(ValueError, match=r"31 dims.*antmaze-umaze expects the layout torso x, y.*"
                                       r"29 dims.*Minari"):
    envs.check_dataset_layout("antmaze-umaze-v2", 31, 8, source="D4RL/antmaze/umaze-v1")
  with pytest.raises(ValueError, match=r"robot qpos.*object qpos.*goal.*= 60 dims"):
    envs.check_dataset_layout("kitchen-mixed-v0", 59, 9)
  envs.check_dataset_layout("hopper", 17, 3)  # locomotion: left to jaxaug.data.validate


def test_missing_package_error_names_the_extra(monkeypatch):
  import importlib
  real = importlib.import_module

  def fake(name, *a, **k):
    if name == "gymnasium_robotics":
      raise ImportError("No module named 'gymnasium_robotics'")
    return real(name, *a, **k)

  monkeypatch.setattr(compat.importlib, "import_module", fake)
  with pytest.raises(ImportError, match=r'pip install -e "\.\[suites\]"'):
    envs.require_env("antmaze-umaze-v2")
  with pytest.raises(ImportError, match="AntMaze, Maze2D, FrankaKitchen and Adroit"):
    envs.make_env("pen-human-v1")
  envs.require_env("hopper")  # locomotion needs no extra


# ------------------------------------------------------------------------- with the extra


def test_kitchen_shim_fixes_joint_access(robotics):
  import mujoco
  from gymnasium_robotics.utils import mujoco_utils as mu
  env = envs.make_env("kitchen-complete-v0", seed=0)
  model, data = env.unwrapped.model, env.unwrapped.data
  name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, 0)
  mu.set_joint_qpos(model, data, name, 0.25)
  assert mu.get_joint_qpos(model, data, name) == pytest.approx([0.25])
  assert mu.get_joint_qvel(model, data, name).shape == (1,)


def test_metaworld_weld_shim_keeps_the_mocap_weld(metaworld_pkg):
  env = envs.make_env("Meta-World/reach-v3", seed=0)
  model = env.unwrapped.model
  import mujoco
  welds = [i for i in range(model.neq) if int(model.eq_type[i]) == int(mujoco.mjtEq.mjEQ_WELD)]
  assert welds
  for i in welds:  # the 11 values of the mujoco 3 layout, and 'relative pose as given'
    np.testing.assert_allclose(model.eq_data[i], [0, 0, 0, 0, 0, 0, -1, 0, 0, 0, 5, 0])


def _rollout(env, steps, seed=0):
  rng = np.random.default_rng(seed)
  obs, _ = env.reset(seed=seed)
  out = [obs]
  for _ in range(steps):
    obs, r, term, trunc, info = env.step(rng.uniform(-1, 1, env.action_space.shape))
    assert obs.dtype == np.float32 and np.all(np.isfinite(obs))
    out.append(obs)
    if term or trunc:
      break
  return np.array(out)


@pytest.mark.parametrize("name", ["antmaze-umaze-v2", "antmaze-medium-play-v2",
                                  "antmaze-large-diverse-v2"])
def test_antmaze_walls_and_observation_in_d4rl_frame(robotics, name):
  import mujoco
  env_id = envs.resolve_env_id(name)
  spec = suites.suite_env(env_id)
  rows = spec.maze
  (ri, rj), = [(i, j) for i, r in enumerate(rows) for j, c in enumerate(r) if c == "R"]
  env = envs.make_env(name)
  obs, info = env.reset(seed=3)
  u = env.unwrapped
  m, n = len(rows[0]), len(rows)
  # Every wall of gymnasium-robotics' model, in D4RL's frame, sits where D4RL puts block (i, j):
  # ((j - j_R) 4, (i - i_R) 4), and there is one per '#' of D4RL's map.
  offset = obs[:2] - u.data.qpos[:2]
  walls = set()
  for g in range(u.model.ngeom):
    gname = mujoco.mj_id2name(u.model, mujoco.mjtObj.mjOBJ_GEOM, g) or ""
    if gname.startswith("block_"):
      x, y = u.model.geom_pos[g][:2] + offset
      walls.add((int(round(y / 4.0)) + ri, int(round(x / 4.0)) + rj))
      assert abs(x / 4.0 - round(x / 4.0)) < 1e-6 and abs(y / 4.0 - round(y / 4.0)) < 1e-6
  assert walls == {(i, j) for i in range(n) for j in range(m) if rows[i][j] == "#"}
  # Start: D4RL's origin (the R cell) plus reset noise of at most 0.1.
  assert np.all(np.abs(obs[:2]) <= 0.1 + 1e-6)
  # Observation = [x, y (D4RL frame), qpos[2:15], qvel[:14]] of the simulator.
  np.testing.assert_allclose(obs[2:15], u.data.qpos[2:15], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(obs[15:], u.data.qvel[:14], rtol=1e-6, atol=1e-6)
  # Goal: the G cell plus D4RL's noise in [0, 1.5] per coordinate, clipped at 0.
  (gi, gj), = [(i, j) for i, r in enumerate(rows) for j, c in enumerate(r) if c == "G"]
  cell = np.array([(gj - rj) * 4.0, (gi - ri) * 4.0])
  assert np.all(info["goal"] >= np.maximum(cell, 0) - 1e-9)
  assert np.all(info["goal"] <= np.maximum(cell + 1.5, 0) + 1e-9)
  # A random rollout stays finite and does not succeed by chance within 30 steps.
  traj = _rollout(env, 30)
  assert traj.shape[1] == 29


def test_antmaze_success_ends_the_episode_with_reward_one(robotics):
  env = envs.make_env("antmaze-umaze-v2")
  obs, info = env.reset(seed=0)
  u = env.unwrapped
  qpos = u.data.qpos.copy()
  qpos[:2] += info["goal"] - obs[:2]  # move the torso onto the goal
  u.ant_env.set_state(qpos, np.zeros_like(u.data.qvel))
  obs, reward, terminated, truncated, info = env.step(np.zeros(8))
  assert np.linalg.norm(obs[:2] - info["goal"]) <= 0.5
  assert (reward, terminated, info["success"]) == (1.0, True, True)


def test_maze2d_frame_rotation_and_walls(robotics):
  env = envs.make_env("maze2d-umaze-v1")
  env.reset(seed=0)
  u = env.unwrapped
  # Hand-checked: umaze is 5 x 5, so D4RL qpos = (1.8 - y, 1.8 + x), qvel = (-vy, vx).
  u.point_env.set_state(np.array([0.5, -1.0]), np.array([0.3, -0.2]))
  obs = env.step(np.zeros(2))[0]
  x, y = u.data.qpos
  vx, vy = u.data.qvel
  np.testing.assert_allclose(obs, [1.8 - y, 1.8 + x, -vy, vx], atol=1e-6)
  assert obs[0] == pytest.approx(1.8 + 1.0, abs=0.05) and obs[1] == pytest.approx(2.3, abs=0.05)

  def push(start_d4rl, action, steps=60):
    env.reset(seed=1)
    u.point_env.set_state(np.array([start_d4rl[1] - 1.8, 1.8 - start_d4rl[0]]), np.zeros(2))
    for _ in range(steps):
      obs = env.step(np.asarray(action, np.float64))[0]
    return obs

  # From the goal cell (1, 1): +x in D4RL's frame is towards row 2, a wall in column 1: the
  # ball (radius 0.1) stops at the wall face, qpos 2.5 - 1.2 - 0.1 = 1.2.
  assert push((1.0, 1.0), (1.0, 0.0))[0] == pytest.approx(1.2, abs=0.03)
  # +y runs along row 1 (free in columns 1-3) to the wall at column 4: 4.5 - 1.2 - 0.1 = 3.2.
  assert push((1.0, 1.0), (0.0, 1.0))[1] == pytest.approx(3.2, abs=0.03)
  # D4RL's sparse reward: 1 per step within 0.5 of the goal (1, 1), no termination.
  env.reset(seed=2)
  u.point_env.set_state(np.array([1.0 - 1.8, 1.8 - 1.2]), np.zeros(2))
  obs, reward, terminated, truncated, info = env.step(np.zeros(2))
  assert (reward, terminated, info["success"]) == (1.0, False, True)


def test_kitchen_observation_layout(robotics):
  env = envs.make_env("kitchen-mixed-v0")
  obs, _ = env.reset(seed=0)
  qpos = env.unwrapped.data.qpos
  assert obs.shape == (60,)
  # Robot and object qpos (gymnasium-robotics adds small observation noise, < 1e-2).
  np.testing.assert_allclose(obs[:9], qpos[:9], atol=2e-2)
  np.testing.assert_allclose(obs[9:30], qpos[9:30], atol=2e-2)
  # Goal block, hand-written from D4RL's task targets for the mixed tasks (microwave, kettle,
  # bottom burner, light switch): qpos indices 22, 23-29, 11-12, 17-18; zeros elsewhere.
  goal = np.zeros(30)
  goal[22] = -0.75
  goal[23:30] = [-0.23, 0.75, 1.62, 0.99, 0.0, 0.0, -0.06]
  goal[11:13] = [-0.88, -0.01]
  goal[17:19] = [-0.69, -0.05]
  np.testing.assert_allclose(obs[30:], goal, atol=1e-6)
  traj = _rollout(env, 10)
  np.testing.assert_allclose(traj[:, 30:], np.tile(goal, (len(traj), 1)), atol=1e-6)


@pytest.mark.parametrize("name", ["pen-human-v1", "door-human-v1", "hammer-human-v1",
                                  "relocate-human-v1"])
def test_adroit_flat_observation(robotics, name):
  env = envs.make_env(name)
  spec = envs.env_spec(name)
  obs, _ = env.reset(seed=0)
  assert obs.shape == (spec.obs_dim,) and obs.dtype == np.float32
  inner = env.env  # the gymnasium-robotics env under jaxaug's float32 wrapper
  np.testing.assert_allclose(obs, np.asarray(inner.unwrapped._get_obs(), np.float32),
                             rtol=1e-6, atol=1e-6)
  assert env.spec.max_episode_steps == suites.suite_env(spec.env_id).max_episode_steps
  _rollout(env, 5)


def test_metaworld_scripted_expert_succeeds_in_evaluation(metaworld_pkg):
  from jaxaug.data import builder
  policy = builder.metaworld_scripted_policy("Meta-World/reach-v3", noise=0.0, seed=0)
  res = envs.evaluate(lambda o: np.stack([policy(x, 0) for x in o]), "Meta-World/reach-v3",
                      num_episodes=2, seed=0)
  assert res["success_rate"] == 1.0 and res["normalized_score_mean"] == 100.0
  assert res["length_mean"] == 500  # Meta-World episodes run to the time limit


@pytest.mark.parametrize("name", ["antmaze-medium-play-v2", "maze2d-large-v1", "kitchen-mixed-v0",
                                  "pen-human-v1", "relocate-human-v1"])
def test_episodes_depend_on_the_reset_seed_alone(robotics, name):
  def run(seed):
    env = envs.make_env(name)
    first = env.reset(seed=seed)[0]
    for _ in range(3):
      last = env.step(np.full(env.action_space.shape, 0.1))[0]
    return np.concatenate([first, last])

  a, b, c = run(4), run(4), run(5)
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).max() > 1e-4


def test_metaworld_episode_depends_on_the_reset_seed_alone(metaworld_pkg):
  """metaworld alone draws its goal variations from unseeded generators; jaxaug's env picks the
  variation from the reset seed, so two fresh envs agree and another seed differs."""
  first = envs.make_env("Meta-World/push-v3").reset(seed=11)[0]
  again = envs.make_env("Meta-World/push-v3").reset(seed=11)[0]
  other = envs.make_env("Meta-World/push-v3").reset(seed=12)[0]
  np.testing.assert_array_equal(first, again)
  assert np.abs(first - other).max() > 1e-3


def test_maze2d_waypoint_data_scores_near_d4rl_expert(robotics, tmp_path):
  """A noiseless waypoint controller (an oracle of the map) in the mapped frame beats D4RL's
  reference 'expert' return (as planners such as Diffuser do, > 100); with the frame or the
  walls wrong it would run into walls and score far lower. 200 = in the goal every step."""
  from jaxaug.data import builder
  stats = builder.build_suite_dataset("maze2d-umaze-v1", str(tmp_path), size=1500, seed=0,
                                      noise=0.0)
  assert stats["episodes"] == 5
  assert 100.0 < stats["normalized_score_mean"] < 200.0, stats


# ------------------------------------------ built D4RL-layout files: load, validate, train


SUITE_RUNS = [("maze2d-umaze-v1", "scripted", "robotics"),
              ("antmaze-umaze-v2", "random", "robotics"),
              ("kitchen-complete-v0", "random", "robotics"),
              ("pen-human-v1", "random", "robotics"),
              ("Meta-World/reach-v3", "scripted", "metaworld")]


@pytest.mark.parametrize("name, policy, package", SUITE_RUNS)
def test_built_file_loads_validates_and_trains_with_evaluation(name, policy, package, tmp_path):
  _need("gymnasium_robotics" if package == "robotics" else "metaworld")
  from jaxaug.configs_io import load_config_module
  from jaxaug.data import builder, loaders
  from jaxaug.train.offline import train_offline
  env_id = envs.resolve_env_id(name)
  spec = envs.env_spec(env_id)
  stats = builder.build_suite_dataset(name, str(tmp_path / "data"), size=600, seed=1,
                                      policy=policy)
  ds = loaders.load_dataset("d4rl:" + stats["path"], env_spec=spec)  # loads and validates
  assert (len(ds), ds.obs_dim, ds.act_dim) == (600, spec.obs_dim, spec.act_dim)
  assert ds.metadata["env_id"] == env_id and "NOT D4RL" in ds.metadata["note"]
  if env_id.startswith("antmaze"):
    assert ds.infos["goal"].shape == (600, 2)

  c = load_config_module(os.path.join(ROOT, "configs", "iql.py")).get_config("tiny")
  c.dataset = "d4rl:" + stats["path"]
  c.env_id = ""  # inferred from the file's metadata
  c.agent.hidden_dims = (32, 32)
  c.num_steps, c.updates_per_dispatch, c.batch_size = 40, 20, 32
  c.log_every, c.eval_every, c.checkpoint_every = 20, 0, 0
  c.eval_episodes = 2
  out = train_offline(c, str(tmp_path / "run"))
  assert out["env_id"] == env_id and out["num_steps"] == 40
  assert np.isfinite(out["eval/normalized_score"]) and np.isfinite(out["eval/return"])
  if env_id.startswith("antmaze"):
    assert out["eval/return"] in (0.0, 0.5, 1.0)  # 0/1 per episode


def test_file_with_another_layout_is_refused_naming_both(robotics, tmp_path):
  from jaxaug.data import loaders
  from jaxaug.data.dataset import OfflineDataset
  from jaxaug.train.offline import train_offline
  rng = np.random.default_rng(0)
  n = 50
  obs = rng.normal(size=(n + 1, 31)).astype(np.float32)  # Minari's sorted-key AntMaze layout
  timeouts = np.zeros(n)
  timeouts[-1] = 1
  path = tmp_path / "antmaze-umaze-v2.hdf5"
  loaders.save_d4rl_hdf5(OfflineDataset(obs[:-1], rng.uniform(-1, 1, (n, 8)), np.zeros(n),
                                        obs[1:], np.zeros(n), timeouts), path)
  from jaxaug.configs_io import load_config_module
  c = load_config_module(os.path.join(ROOT, "configs", "dtql.py")).get_config("antmaze-umaze")
  c.data_dir = str(tmp_path)
  with pytest.raises(ValueError, match=r"31 dims.*torso x, y.*qpos\[2:15\].*qvel\[0:14\]"):
    train_offline(c, None)


def test_build_dataset_cli_writes_a_suite_file(robotics, tmp_path):
  """experiments/build_dataset.py --env=<suite dataset> writes OUT/<name>.hdf5 (the name the
  presets read under --config.data_dir), random policy by default for Adroit."""
  import json
  import subprocess
  import sys
  out = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "build_dataset.py"),
                        "--env=pen-human-v1", "--size=120", f"--out={tmp_path}"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert out.returncode == 0, out.stderr[-2000:]
  stats = json.loads(out.stdout[out.stdout.index("{"):])
  assert stats["path"] == str(tmp_path / "pen-human-v1.hdf5") and stats["transitions"] == 120
  from jaxaug.data import loaders
  ds = loaders.load_dataset(f"d4rl:{stats['path']}", env_spec=envs.env_spec("pen-human-v1"))
  assert ds.metadata["policy"] == "random" and len(ds) == 120
  bad = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "build_dataset.py"),
                        "--env=pen-human-v1", "--suite_policy=scripted", "--size=10",
                        f"--out={tmp_path}"], capture_output=True, text=True, timeout=600,
                       cwd=ROOT)
  assert bad.returncode != 0 and "use --suite_policy=random" in bad.stderr


# ------------------------------------------------- GTA's terminal penalty on Kitchen (switch)


def _kitchen_like_dataset(episodes: int = 3, length: int = 12):
  """Demonstrations ending terminal (as D4RL's Kitchen files mark every demonstration's end),
  reward = tasks done so far."""
  from jaxaug.data.dataset import OfflineDataset
  rng = np.random.default_rng(0)
  n = episodes * length
  rewards = np.tile(np.minimum(np.arange(length) // 3, 4), episodes).astype(np.float32)
  terminals = np.tile(np.arange(length) == length - 1, episodes)
  obs = rng.normal(size=(n + 1, 60)).astype(np.float32)
  return OfflineDataset(obs[:-1], rng.uniform(-1, 1, (n, 9)), rewards, obs[1:], terminals,
                        np.zeros(n), source="kitchen-like")


def test_gta_kitchen_terminal_penalty_switch():
  from jaxaug.augment import gta
  from jaxaug.configs_io import load_config_file
  paper = load_config_file("gta:kitchen-mixed")
  fixed = load_config_file("gta:kitchen-mixed+fixes")
  assert paper.gta.terminals_are_failures and paper.gta.terminal_penalty == -100.0
  assert gta.terminal_penalty(paper) == -100.0  # the official rule: no 'maze' in the name
  assert not fixed.gta.terminals_are_failures and gta.terminal_penalty(fixed) == 0.0
  # Only Kitchen's +fixes presets turn it off; locomotion keeps its failure penalty.
  for name in ("hopper-medium+fixes", "pen-human+fixes", "kitchen-complete",
               "antmaze-umaze+fixes"):
    assert load_config_file(f"gta:{name}").gta.terminals_are_failures, name
  for name in ("kitchen-complete+fixes", "kitchen-partial+fixes"):
    assert not load_config_file(f"gta:{name}").gta.terminals_are_failures, name

  ds = _kitchen_like_dataset()
  for c in (paper, fixed):
    c.gta.horizon = 8
  with_penalty = gta.prepare(ds, paper)
  without = gta.prepare(ds, fixed)
  term = ds.terminals > 0
  np.testing.assert_allclose(np.asarray(with_penalty.rewards)[term], ds.rewards[term] - 100.0)
  np.testing.assert_allclose(np.asarray(without.rewards), ds.rewards)
  assert with_penalty.spec.terminal_penalty == -100.0 and without.spec.terminal_penalty == 0.0
  # The return condition of the window that ends at a terminal carries the penalty or not.
  assert float(np.min(with_penalty.returns)) < 0.0 <= float(np.min(without.returns))
  # The generation settings follow: nothing to decode without a penalty.
  assert gta.generation_config(paper).decode_terminals is False
  assert gta.generation_config(fixed).decode_terminals is False
  # A config saved before the switch existed keeps the official rule.
  del paper.gta["terminals_are_failures"]
  assert gta.terminal_penalty(paper) == -100.0
