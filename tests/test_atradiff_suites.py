"""ATraDiff's suite presets (configs/atradiff.py: rlpd-antmaze-*, rlpd-kitchen-*,
rlpd-metaworld-*), Meta-World's sparse success reward (jaxaug/envs/suites/wrappers.py) and the
online loop's `reward_shift` (RLPD's AntMaze r - 1). Tests that need a simulator package skip,
with the install line, only when it is missing."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxaug import envs
from jaxaug.configs_io import load_config_file
from jaxaug.data import replay
from jaxaug.data.dataset import Transitions
from jaxaug.envs import suites
from jaxaug.envs.suites import compat
from jaxaug.types import EnvSpec


def _need(package):
  if not suites.available(package):
    pytest.skip(f"needs {package} (install: {compat.INSTALL_HINT})")


def _module():
  from jaxaug.configs_io import load_config_module
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return load_config_module(os.path.join(root, "configs", "atradiff.py"))


# --------------------------------------------------------------------- presets (no simulator)


def test_suite_presets_listed_with_fixes_twins():
  m = _module()
  assert len(m.ANTMAZE) == 6 and len(m.KITCHEN) == 3  # the paper: 6 AntMaze tasks (Sec. 5.2)
  assert m.METAWORLD_TASKS[0] == "push" and len(m.METAWORLD_SEQUENCE) == 8  # Table 3
  for p in m.SUITE_PRESETS:
    assert p in m.PRESETS and f"{p}+fixes" in m.PRESETS, p


@pytest.mark.parametrize("preset, env_id, data, steps, shift, min_critics", [
    ("rlpd-antmaze-umaze", "antmaze-umaze", "antmaze-umaze-v2", 300_000, -1.0, 1),
    ("rlpd-antmaze-large-diverse", "antmaze-large", "antmaze-large-diverse-v2", 300_000, -1.0, 1),
    ("rlpd-kitchen-mixed", "kitchen-microwave-kettle-bottomburner-light", "kitchen-mixed-v0",
     300_000, 0.0, 2),
    ("rlpd-kitchen-partial", "kitchen-microwave-kettle-light-slider", "kitchen-partial-v0",
     300_000, 0.0, 2),
    ("rlpd-metaworld-push", "Meta-World/push-v3-sparse", "metaworld-push-v3-sparse", 1_000_000,
     0.0, 2),
    ("rlpd-metaworld-peg-insert-side", "Meta-World/peg-insert-side-v3-sparse",
     "metaworld-peg-insert-side-v3-sparse", 1_000_000, 0.0, 2),
])
def test_suite_preset_fields(preset, env_id, data, steps, shift, min_critics):
  c = load_config_file(f"atradiff:{preset}")
  assert c.agent_name == "rlpd" and envs.resolve_env_id(c.env_id) == env_id
  assert c.offline_dataset == f"d4rl:{c.data_dir}/{data}.hdf5"
  assert c.atradiff.offline_dataset == c.offline_dataset
  c.data_dir = "/data/d4rl"  # both specs follow data_dir
  assert c.offline_dataset == c.atradiff.offline_dataset == f"d4rl:/data/d4rl/{data}.hdf5"
  assert c.num_env_steps == steps and c.replay_capacity == steps
  assert c.reward_shift == shift and c.agent.num_min_critics == min_critics
  assert c.agent.hidden_dims == (256, 256, 256) and c.agent.backup_entropy is False
  assert c.agent.target_entropy == -envs.env_spec(env_id).act_dim / 2.0
  assert c.utd_ratio == 20 and c.offline_ratio == 0.5 and c.start_steps == 5000
  assert c.atradiff.enabled and c.atradiff.adapt and c.atradiff.importance == "td_error"
  assert c.atradiff.terminal_fn == "none"  # no observation-based termination rule there
  assert c.atradiff.prune_rule == "paper"
  assert load_config_file(f"atradiff:{preset}+fixes").atradiff.prune_rule == "signed"


def test_locomotion_presets_keep_no_reward_shift():
  for p in ("rlpd-hopper", "sac-hopper", "tiny"):
    assert load_config_file(f"atradiff:{p}").get("reward_shift", 0.0) == 0.0, p


# ------------------------------------------------------- reward_shift reaches every batch


class _RecordingAgent:
  """Agent protocol stub: 'update' reports the mean reward of the batch it was given."""

  @staticmethod
  def init(key, spec, config):
    del key, spec, config
    return {"w": jnp.zeros(())}

  @staticmethod
  def update(state, batch, key):
    del key
    return state, {"reward_mean": jnp.mean(batch.rewards)}

  @staticmethod
  def act(state, obs, key, deterministic=False):
    del state, key, deterministic
    return jnp.zeros((obs.shape[0], 2))


def test_reward_shift_is_added_to_sampled_batches_only():
  from jaxaug.train import online
  from jaxaug.train.online_state import LoopData, LoopState, OnlineFns, unpack_rows
  spec = EnvSpec(obs_dim=3, act_dim=2, max_action=1.0, env_id="stub")
  rows = Transitions(observations=jnp.ones((8, 3)), actions=jnp.zeros((8, 2)),
                     rewards=jnp.full((8,), 0.25), next_observations=jnp.ones((8, 3)),
                     terminals=jnp.zeros((8,)), timeouts=jnp.zeros((8,)))

  def full_buffer():  # the step donates its buffer: a fresh one per run
    buf = replay.init_buffer(3, 2, 8)
    for i in range(8):
      buf = replay.add(buf, jax.tree.map(lambda x: x[i:i + 1], rows))
    return buf

  packed = jnp.asarray(online.pack_step(np.zeros(3), np.zeros(2), 0.25, np.zeros(3), False,
                                        False, np.zeros(3)))[None]
  out = {}
  for shift in (0.0, -1.0):
    fns = OnlineFns(agent=_RecordingAgent, spec=spec, batch_size=4, reward_shift=shift,
                    replay_capacity=8)
    state = LoopState(agent=_RecordingAgent.init(None, spec, None), buffer=full_buffer(),
                      key=jax.random.key(0), action=None)
    state = fns.store(state, unpack_rows(spec, packed)[0], jnp.int32(8))
    state, metrics = jax.jit(lambda s: fns.update(s, LoopData(), True))(state)
    out[shift] = float(metrics["reward_mean"])
    # The stored rows keep the environment's reward.
    np.testing.assert_allclose(np.asarray(state.buffer.data.rewards), 0.25)
  assert out[0.0] == pytest.approx(0.25) and out[-1.0] == pytest.approx(-0.75)


# ---------------------------------------------------------- Meta-World sparse success reward


def test_sparse_metaworld_names_resolve():
  for name in ("Meta-World/push-v3-sparse", "metaworld-push-v3-sparse", "mw/push-sparse",
               "/data/metaworld-push-v3-sparse.hdf5"):
    assert envs.resolve_env_id(name) == "Meta-World/push-v3-sparse", name
  assert envs.resolve_env_id("/data/metaworld-push-v3.hdf5") == "Meta-World/push-v3"
  assert suites.specs.metaworld_task("Meta-World/sweep-into-v3-sparse") == "sweep-into"
  assert envs.env_spec("Meta-World/push-v3-sparse").obs_dim == 39
  assert envs.scored_by_success("Meta-World/push-v3-sparse")


def test_sparse_reward_is_success_and_ends_the_episode():
  _need("metaworld")
  from jaxaug.data import builder
  expert = builder.metaworld_scripted_policy("Meta-World/push-v3", noise=0.0, seed=0)
  sparse, dense = envs.make_env("Meta-World/push-v3-sparse"), envs.make_env("Meta-World/push-v3")
  try:
    o_s, _ = sparse.reset(seed=5)
    o_d, _ = dense.reset(seed=5)
    np.testing.assert_array_equal(o_s, o_d)  # same task variation, same start
    rewards, dense_rewards, t = [], [], 0
    while True:
      a = expert(o_s, t)
      o_s, r, term, trunc, info = sparse.step(a)
      o_d, r_d, _, _, info_d = dense.step(a)
      np.testing.assert_array_equal(o_s, o_d)  # the wrapper changes rewards only
      assert r == float(info["success"]) == float(info_d["success"])
      rewards.append(r)
      dense_rewards.append(r_d)
      t += 1
      if term or trunc:
        break
    assert term and not trunc and rewards[-1] == 1.0 and sum(rewards) == 1.0
    assert t < 500 and len(set(dense_rewards)) > 2  # the dense reward is shaped
  finally:
    sparse.close()
    dense.close()
  # Evaluation: the expert succeeds with return 1; doing nothing scores 0 over 500 steps.
  solved = envs.evaluate(lambda o: np.stack([expert(x, 0) for x in o]),
                         "Meta-World/push-v3-sparse", 2, seed=0)
  assert solved["return_mean"] == 1.0 and solved["success_rate"] == 1.0
  assert solved["normalized_score_mean"] == 100.0 and solved["length_mean"] < 500
  idle = envs.evaluate(lambda o: np.zeros((len(o), 4)), "Meta-World/push-v3-sparse", 1, seed=0)
  assert idle["return_mean"] == 0.0 and idle["length_mean"] == 500


# ------------------------------------------- shrunken end to end: a Meta-World suite preset


@pytest.mark.heavy
def test_metaworld_preset_runs_shrunken(tmp_path):
  """The preset matrix runs one preset per structure (Kitchen's for the Meta-World presets);
  this runs rlpd-metaworld-push itself through train_online at the matrix's shrunken size."""
  _need("metaworld")
  from jaxaug.train import online
  from tests.test_preset_matrix import build, resolve_datasets, shrink
  c = build("atradiff", "rlpd-metaworld-push")
  data_dir = str(tmp_path / "data")
  os.makedirs(data_dir)
  specs = resolve_datasets(c, data_dir)
  assert specs["offline_dataset"].endswith("/metaworld-push-v3-sparse.hdf5")
  small = shrink(c)
  small.lock()
  summary = online.train_online(small, str(tmp_path / "work"))
  assert summary["steps"] == small.num_env_steps and summary["env_id"] == "Meta-World/push-v3-sparse"
  assert np.isfinite(summary["last_eval"]["eval/normalized_score"])


def test_every_atradiff_metaworld_task_has_a_scripted_expert():
  """The builder's default collection policy exists for every task a preset names (metaworld's
  class names do not always follow the task name: peg-insert-side)."""
  _need("metaworld")
  from jaxaug.configs_io import load_config_module
  from jaxaug.data import builder
  for task in load_config_module("atradiff").METAWORLD_TASKS:
    policy = builder.metaworld_scripted_policy(f"Meta-World/{task}-v3-sparse", 0.0, 0)
    assert callable(policy), task
  with pytest.raises(ValueError, match="no scripted policy"):
    builder.metaworld_scripted_policy("Meta-World/not-a-task-v3", 0.0, 0)
