"""jaxaug.augment.study: argument checks, and a cheap end-to-end study (S4RL only, TD3+BC tiny)
that writes study.json and, re-run, reuses every finished stage with the same results."""

import json
import os

import pytest

from jaxaug.augment import study
from jaxaug.configs_io import load_config_file


def _agent():
  c = load_config_file("td3bc:tiny")
  c.num_steps = 100
  c.updates_per_dispatch = 50
  c.log_every = 50
  c.eval_every = 100
  c.checkpoint_every = 100
  c.eval_episodes = 1
  c.num_seeds = 2
  return c


def test_bad_methods_are_named(tmp_path):
  with pytest.raises(ValueError, match="unknown method"):
    study.run_study(str(tmp_path), "embedded:hopper-medium-replay", methods=("gta", "noise"),
                    generator_configs={}, agent_config=_agent(), agent_methods=())
  with pytest.raises(ValueError, match="need a config"):
    study.run_study(str(tmp_path), "embedded:hopper-medium-replay", methods=("synther",),
                    generator_configs={}, agent_config=_agent(), agent_methods=())
  with pytest.raises(ValueError, match="agent_methods"):
    study.run_study(str(tmp_path), "embedded:hopper-medium-replay", methods=("s4rl",),
                    generator_configs={}, agent_config=_agent(), agent_methods=("gta",))


def test_s4rl_study_writes_results_and_resumes(tmp_path):
  kw = dict(methods=("s4rl",), generator_configs={}, agent_config=_agent(),
            agent_methods=("s4rl",), protocol=study.Protocol(agent_batch_size=64))
  first = study.run_study(str(tmp_path), "embedded:hopper-medium-replay", **kw)
  assert [r["name"] for r in first["quality"]] == ["original", "S4RL"]
  s4 = first["quality"][1]
  assert 0 < s4["novelty_state"] < 0.01 and s4["mse"] < 1e-3  # tiny Gaussian state noise
  assert set(first["scores"]) == {"original", "S4RL"}
  for s in first["scores"].values():
    assert len(s["per_seed"]) == 2 and s["num_steps"] == 100 and s["batch_size"] == 64
  assert first["scores"]["S4RL"]["augment"]["s4rl_std"] == 3e-4  # fresh noise per update
  saved = json.load(open(tmp_path / "study.json"))
  assert saved["scores"] == first["scores"]
  mtime = os.path.getmtime(tmp_path / "s4rl.npz")
  again = study.run_study(str(tmp_path), "embedded:hopper-medium-replay", **kw)
  assert again["scores"] == first["scores"]  # finished agent runs are reused, not retrained
  assert os.path.getmtime(tmp_path / "s4rl.npz") == mtime


def test_protocol_defaults_are_the_papers():
  p = study.Protocol()
  assert p.synther_mode == "replace"  # SynthER trains on generated data only
  assert not p.s4rl_fixed_copy  # S4RL: fresh noise per update
  assert p.agent_batch_size == 1024  # GTA App. C.3, every arm
  agent = _agent()
  arms = {m: study.agent_arm_config(agent, "embedded:hopper-medium-replay", m, "/w", p, 3e-4)
          for m in ("none", "s4rl", "synther", "gta")}
  assert all(c.batch_size == 1024 for c in arms.values())
  assert arms["none"].augment.path == "" and arms["none"].augment.s4rl_std == 0.0
  assert arms["s4rl"].augment.path == "" and arms["s4rl"].augment.s4rl_std == 3e-4
  assert arms["synther"].augment.mode == "replace"
  assert arms["synther"].augment.path == "npz:/w/synther/generated.npz"
  assert arms["gta"].augment.mode == "concat" and arms["gta"].augment.s4rl_std == 0.0
  alt = study.Protocol(synther_mode="concat", s4rl_fixed_copy=True, agent_batch_size=None)
  s4 = study.agent_arm_config(agent, "x", "s4rl", "/w", alt, 3e-4)
  assert s4.augment.path == "npz:/w/s4rl.npz" and s4.augment.s4rl_std == 0.0
  assert s4.batch_size == agent.batch_size
  assert study.agent_arm_config(agent, "x", "synther", "/w", alt, 3e-4).augment.mode == "concat"
  assert agent.augment.path == ""  # the caller's config is untouched
  with pytest.raises(ValueError, match="synther_mode"):
    study.Protocol(synther_mode="mix")


def test_s4rl_noise_is_fresh_per_update_in_raw_units():
  import jax
  import numpy as np
  from jaxaug import envs
  from jaxaug.data import load_dataset
  from jaxaug.train import offline
  c = _agent()
  assert c.augment.s4rl_std == 0.0  # off in normal runs
  ds = load_dataset(c.dataset)
  spec = envs.env_spec("Hopper-v5")
  data, plain_fn, stats, _ = offline.prepare_data(c, ds, spec)
  c.augment.s4rl_std = 1e-2
  data, noisy_fn, stats, _ = offline.prepare_data(c, ds, spec)
  key = jax.random.PRNGKey(0)
  k_batch, _ = jax.random.split(key)
  clean = plain_fn(data, k_batch, 4096)  # the same rows as the noisy batch draws
  a = jax.jit(noisy_fn, static_argnums=2)(data, key, 4096)
  b = jax.jit(noisy_fn, static_argnums=2)(data, jax.random.PRNGKey(1), 4096)
  noise = np.asarray(a.observations - clean.observations) * np.asarray(stats.std)  # raw units
  assert abs(noise.std() - 1e-2) < 1e-3 and abs(noise.mean()) < 1e-3
  np.testing.assert_array_equal(np.asarray(a.actions), np.asarray(clean.actions))
  assert not np.allclose(np.asarray(a.observations), np.asarray(b.observations))
  c.augment.s4rl_std = -1.0
  with pytest.raises(ValueError, match="s4rl_std"):
    offline.prepare_data(c, ds, spec)
