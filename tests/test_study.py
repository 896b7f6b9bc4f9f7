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
            agent_methods=("s4rl",))
  first = study.run_study(str(tmp_path), "embedded:hopper-medium-replay", **kw)
  assert [r["name"] for r in first["quality"]] == ["original", "S4RL"]
  s4 = first["quality"][1]
  assert 0 < s4["novelty_state"] < 0.01 and s4["mse"] < 1e-3  # tiny Gaussian state noise
  assert set(first["scores"]) == {"original", "S4RL"}
  for s in first["scores"].values():
    assert len(s["per_seed"]) == 2 and s["num_steps"] == 100
  saved = json.load(open(tmp_path / "study.json"))
  assert saved["scores"] == first["scores"]
  mtime = os.path.getmtime(tmp_path / "s4rl.npz")
  again = study.run_study(str(tmp_path), "embedded:hopper-medium-replay", **kw)
  assert again["scores"] == first["scores"]  # finished agent runs are reused, not retrained
  assert os.path.getmtime(tmp_path / "s4rl.npz") == mtime
