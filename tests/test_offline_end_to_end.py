"""Each offline agent learns through the full pipeline: embedded dataset -> train_offline ->
gymnasium evaluation. Critic loss falls, and the evaluation return beats a random policy's."""

import json
import os

import numpy as np
import pytest

from jaxaug.configs_io import load_config_file
from jaxaug.envs import evaluate
from jaxaug.train.offline import train_offline

EPISODES = 5


def random_policy_return(seed=0):
  rng = np.random.default_rng(seed)
  res = evaluate(lambda o: rng.uniform(-1.0, 1.0, (o.shape[0], 3)), "Hopper-v5", EPISODES,
                 seed=seed)
  return res["return_mean"]


@pytest.mark.parametrize("name,loss_key", [("td3bc", "train/critic_loss"),
                                           ("iql", "train/critic_loss")])
def test_agent_learns_on_embedded_data(name, loss_key, tmp_path):
  c = load_config_file(f"{name}:tiny")
  c.dataset = "embedded:hopper-medium-replay"
  c.num_steps = 2000
  c.updates_per_dispatch = 100
  c.log_every = 100
  c.eval_every = 2000
  c.checkpoint_every = 2000
  c.eval_episodes = EPISODES
  summary = train_offline(c, str(tmp_path))
  rows = [json.loads(l) for l in open(os.path.join(tmp_path, "metrics.jsonl"))]
  # TD loss scales with the value scale, which grows from ~0 as Q learns; compare the loss
  # relative to the squared mean Q (the critic's fit of its own targets) first vs last.
  rel = [r[loss_key] / (1.0 + r["train/q"] ** 2) for r in rows if loss_key in r]
  assert len(rel) == 20
  assert np.mean(rel[-5:]) < 0.5 * rel[0], rel
  random_return = random_policy_return()
  assert summary["eval/return"] > random_return + 10.0, (summary["eval/return"], random_return)
  assert os.path.exists(tmp_path / "normalization.json")
  assert os.path.exists(tmp_path / "config.json")
  if name == "td3bc":  # re-running a finished run trains nothing and keeps its final metrics
    again = train_offline(c, str(tmp_path))
    assert again["eval/return"] == summary["eval/return"]
    assert json.load(open(tmp_path / "summary.json"))["eval/return"] == summary["eval/return"]
    assert len(open(tmp_path / "metrics.jsonl").readlines()) == len(rows)
