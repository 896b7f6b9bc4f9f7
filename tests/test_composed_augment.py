"""Composed augmentation (jaxaug/augment/composed.py): a trained generator inside train_offline.

  * a warm start of N transitions == the staged path (generate, save npz, load, concat) on the
    same generated data: same buffer rows, same policy updates;
  * no host transfers in the steady state (transfer_guard 'disallow'), for both round placements;
  * 'dispatch' and 'scan' round placements give the same run;
  * 4 fake devices == 1 device for a run with generation rounds;
  * checkpoint + resume (in process, and after SIGKILL: heavy) continue exactly, synthetic buffer
    and generation RNG included;
  * every offline agent (TD3+BC, IQL, CQL, MCQ, DTQL) trains with GTA rounds; SynthER (mix,
    replace) and S4RL on top;
  * bad input: clear errors.
The generators are tiny (10 training steps, 8-step sampler), trained once per module.
"""

import copy
import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxaug import agents, configs_io
from jaxaug.augment import chunks, composed, gta, pipeline
from jaxaug.data import loaders
from jaxaug.data.loaders import save_npz
from jaxaug.train import loop
from jaxaug.train import mesh as mesh_lib
from jaxaug.train import offline
from jaxaug.train.checkpoint import Checkpointer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GTA_WINDOWS = 16  # windows per round; H = 8 -> 7 transitions each
GTA_ROWS = GTA_WINDOWS * 7


def _generator(method: str, workdir: str) -> str:
  g = configs_io.load_config_file(f"{method}:tiny")
  g.num_steps = 10
  g.updates_per_dispatch = 10
  g.checkpoint_every = 10
  g.log_every = 10
  g.sampler.num_steps = 8
  if method == "gta":
    g.windows_per_chunk = GTA_WINDOWS
  else:
    g.samples_per_chunk = 64
  pipeline.train_generator(g, workdir)
  return workdir


@pytest.fixture(scope="module")
def gens(tmp_path_factory):
  root = tmp_path_factory.mktemp("generators")
  return {"gta": _generator("gta", str(root / "gta"))}


@pytest.fixture(scope="module")
def synther_gen(tmp_path_factory):
  return _generator("synther", str(tmp_path_factory.mktemp("gen_synther") / "synther"))


def _config(gen_dir: str, agent: str = "td3bc", **aug):
  c = configs_io.load_config_file(f"{agent}:tiny")
  c.num_steps = 20
  c.updates_per_dispatch = 10
  c.log_every = 10
  c.eval_episodes = 0
  c.checkpoint_every = 0
  c.batch_size = 64
  c.augment.source = f"generator:{gen_dir}"
  c.augment.every = 10
  c.augment.capacity = 2 * GTA_ROWS
  c.augment.round_size = GTA_WINDOWS
  for k, v in aug.items():
    c.augment[k] = v
  return c


def _leaves(tree):
  raw = lambda x: jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x
  return [np.asarray(raw(x)) for x in jax.tree.leaves(tree)]


def _assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
  la, lb = _leaves(a), _leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def _assert_trees_equal(a, b):
  la, lb = _leaves(a), _leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------ staged == composed


def test_warm_start_equals_staged_path(gens, tmp_path):
  """One warm fill of N transitions, no later rounds: the same buffer rows and policy updates as
  generating the same N with the staged pipeline's chunk function, saving, loading, concat."""
  c = _config(gens["gta"], every=1000, warm_start=True)
  out = offline.train_offline(c, None)
  aug = out["aug_state"]
  assert int(aug.rounds) == 2 and int(aug.buffer.size) == 2 * GTA_ROWS
  assert out["augment"]["generated_transitions"] == 2 * GTA_ROWS

  # The staged path on the same keys: round r of the fill uses the r-th split of the generation
  # RNG, fold_in(init key, RNG_SALT).
  ds = loaders.load_dataset(c.dataset)
  gconfig, model, source, _ = composed.load_generator(c, ds)
  gen = gta.generation_config(gconfig)
  gen = dataclasses.replace(gen, windows_per_chunk=GTA_WINDOWS)
  chunk_fn = gta.make_chunk_fn(model, source, gen, gta.window_probabilities(source, gconfig))
  k_init, _ = loop.seed_keys(int(c.seed), 1)
  rng = jax.random.fold_in(k_init, composed.RNG_SALT)
  parts = []
  for _ in range(2):
    rng, key = jax.random.split(rng)
    parts.append(chunk_fn(key))
  arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  path = str(tmp_path / "gen.npz")
  save_npz(chunks.to_dataset(arrays, {"method": "gta"}, source="gta"), path)

  staged = copy.deepcopy(c)
  staged.augment.source = ""
  staged.augment.path = f"npz:{path}"
  staged.augment.mode = "concat"
  ref = offline.train_offline(staged, None)

  # Buffer rows == the staged generated data after the host normalisation.
  data, _, _, _ = offline.prepare_data(staged, ds, offline.resolve_env(staged, ds)[1])
  n_real = len(ds)
  for f in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
    np.testing.assert_allclose(np.asarray(getattr(aug.buffer.data, f)),
                               np.asarray(getattr(data, f))[n_real:], rtol=1e-5, atol=1e-5,
                               err_msg=f)
  _assert_trees_close(out["state"], ref["state"])
  for k in ("train/critic_loss", "train/actor_loss"):
    np.testing.assert_allclose(out[k], ref[k], rtol=1e-5)


def test_sample_union_is_uniform_over_concatenation():
  """concat mode draws the very rows sampling the concatenated dataset draws."""
  from jaxaug.data import dataset as dl, replay
  key = jax.random.key(3)
  f = lambda *shape: jnp.arange(np.prod((5,) + shape), dtype=jnp.float32).reshape((5,) + shape)
  real = dl.Transitions(observations=f(2), actions=f(1), rewards=f(), next_observations=f(2),
                        terminals=jnp.zeros(5), timeouts=jnp.zeros(5))
  buf = replay.init_buffer(2, 1, 8)
  gen = jax.tree.map(lambda x: x + 100.0, real)
  buf = replay.add(buf, jax.tree.map(lambda x: x[:3], gen))
  got = composed.sample_union(real, buf, key, 64)
  want = dl.sample_transitions(dl.concatenate([real, jax.tree.map(lambda x: x[:3], gen)]), key, 64)
  _assert_trees_equal(got, want)
  assert float(jnp.max(got.rewards)) >= 100.0  # generated rows are drawn


def test_write_skips_invalid_rows_and_wraps():
  from jaxaug.data import replay
  buf = replay.init_buffer(1, 1, 5)
  rows = replay.Transitions(observations=jnp.arange(4.0)[:, None], actions=jnp.zeros((4, 1)),
                            rewards=jnp.arange(4.0), next_observations=jnp.zeros((4, 1)),
                            terminals=jnp.zeros(4), timeouts=jnp.zeros(4))
  valid = jnp.array([True, False, True, True])
  buf, n = composed.write(buf, rows, valid)
  assert int(n) == 3 and int(buf.size) == 3 and int(buf.ptr) == 3
  np.testing.assert_array_equal(np.asarray(buf.data.rewards), [0, 2, 3, 0, 0])
  buf, n = composed.write(buf, rows, jnp.ones(4, bool))  # wraps: overwrites the oldest rows
  np.testing.assert_array_equal(np.asarray(buf.data.rewards), [2, 3, 3, 0, 1])
  assert int(buf.size) == 5 and int(buf.ptr) == 2
  full, n = composed.write(replay.init_buffer(1, 1, 5).replace(ptr=jnp.int32(3),
                                                               size=jnp.int32(3)),
                           rows, jnp.ones(4, bool), wrap=False)  # warm fill: no wrap
  assert int(n) == 2 and int(full.size) == 5
  np.testing.assert_array_equal(np.asarray(full.data.rewards), [0, 0, 0, 0, 1])


# ------------------------------------------------------------------ device-resident steady state


def _pieces(c):
  ds = loaders.load_dataset(c.dataset)
  _, spec = offline.resolve_env(c, ds)
  mesh = mesh_lib.make_data_mesh()
  data, sample_fn, _, _, comp = offline.prepare_run(c, ds, spec, mesh)
  agent = agents.get_agent(c.agent_name)
  init = comp.wrap_init(lambda k: agent.init(k, spec, c.agent))
  k_init, rng = loop.seed_keys(int(c.seed), 1)
  state = jax.jit(init)(k_init)
  state, rng, data = mesh_lib.replicate((state, rng, data), mesh)
  k = int(c.updates_per_dispatch)
  dispatch = loop.make_dispatch(comp.wrap_update(agent.update), sample_fn, int(c.batch_size), k,
                                mesh, before_update=comp.hooks.before_update)
  return comp, data, state, rng, dispatch, k


@pytest.mark.parametrize("placement", ["dispatch", "scan"])
def test_steady_state_dispatch_makes_no_host_transfers(gens, placement):
  c = _config(gens["gta"], every=20, round_placement=placement)
  comp, data, state, rng, dispatch, k = _pieces(c)
  step = 0
  for _ in range(3):  # compile: warm fill, dispatch, a round (update 20)
    state = comp.hooks.between_dispatches(state, data, step)
    state, rng, _ = dispatch(state, rng, data)
    step += k
  rounds_before = int(state.aug.rounds)
  with jax.transfer_guard("disallow"):
    for _ in range(4):  # updates 30..69: rounds before 40 and 60
      state = comp.hooks.between_dispatches(state, data, step)
      state, rng, metrics = dispatch(state, rng, data)
      step += k
  assert int(state.aug.rounds) == rounds_before + 2
  assert np.isfinite(float(metrics["critic_loss"]))


def test_round_placements_give_the_same_run(gens):
  outs = [offline.train_offline(_config(gens["gta"], every=10, round_placement=p), None)
          for p in ("dispatch", "scan")]
  assert int(outs[0]["aug_state"].rounds) == 3  # fill 2 + one round before update 10
  _assert_trees_close(outs[0]["aug_state"], outs[1]["aug_state"])
  _assert_trees_close(outs[0]["state"], outs[1]["state"])


_DP_SCRIPT = r"""
import json, sys
import numpy as np, jax
from jaxaug import configs_io
from jaxaug.train import offline
gen_dir, out = sys.argv[1], sys.argv[2]
c = configs_io.load_config_file("td3bc:tiny")
c.num_steps = 30; c.updates_per_dispatch = 10; c.log_every = 10; c.eval_episodes = 0
c.checkpoint_every = 0; c.batch_size = 64
c.augment.source = "generator:" + gen_dir; c.augment.every = 10
c.augment.capacity = 224; c.augment.round_size = 16
s = offline.train_offline(c, None)
raw = lambda x: jax.random.key_data(x) if jax.numpy.issubdtype(x.dtype, jax.dtypes.prng_key) else x
leaves = [np.asarray(raw(x)) for x in jax.tree.leaves((s["state"], s["aug_state"]))]
np.savez(out, *leaves)
print(json.dumps({"devices": jax.device_count(), "rounds": int(s["aug_state"].rounds)}))
"""


def test_four_devices_equal_one_with_generation_rounds(gens, tmp_path):
  results = {}
  for n in (1, 4):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}",
               JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    out = str(tmp_path / f"dp{n}.npz")
    proc = subprocess.run([sys.executable, "-c", _DP_SCRIPT, gens["gta"], out], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["devices"] == n and info["rounds"] == 4  # fill 2 + before updates 10, 20
    with np.load(out) as z:
      results[n] = [z[k] for k in sorted(z.files, key=lambda s: int(s.split("_")[1]))]
  for a, b in zip(results[1], results[4]):
    scale = max(1.0, float(np.max(np.abs(a)))) if a.size and a.dtype.kind == "f" else 1.0
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * scale)


# ------------------------------------------------------------------ checkpoint and resume


def test_resume_continues_exactly_including_the_buffer(gens, tmp_path):
  c = _config(gens["gta"], every=10)
  c.num_steps = 40
  c.checkpoint_every = 20
  full = offline.train_offline(c, str(tmp_path / "full"))
  first = copy.deepcopy(c)
  first.num_steps = 20
  offline.train_offline(first, str(tmp_path / "split"))
  resumed = offline.train_offline(c, str(tmp_path / "split"))
  _assert_trees_equal(full["state"], resumed["state"])
  _assert_trees_equal(full["aug_state"], resumed["aug_state"])
  assert int(full["aug_state"].rounds) == 2 + 3
  # The checkpoint itself holds the buffer and the generation RNG.
  ckpt = Checkpointer(str(tmp_path / "full" / "checkpoints"))
  target = {"state": composed.ComposedState(agent=full["state"], aug=full["aug_state"]),
            "rng": loop.seed_keys(0, 1)[1]}
  restored = ckpt.restore(40, target)["state"]
  ckpt.close()
  _assert_trees_equal(restored.aug, full["aug_state"])
  other = copy.deepcopy(c)  # resume with another generator (here: a link to the same one)
  os.symlink(gens["gta"], str(tmp_path / "other_gen"))
  other.augment.source = f"generator:{tmp_path / 'other_gen'}"
  with pytest.raises(ValueError, match="made with generator"):
    offline.train_offline(other, str(tmp_path / "split"))


@pytest.mark.heavy
def test_kill_mid_run_resumes_bit_exact(tmp_path):
  from tests.helpers import kill_harness as kh
  root = str(tmp_path)
  gen_job = kh.default_jobs()["train_diffusion-gta"]
  kh.reference(root, gen_job)
  job = kh.Job(
      name="train_offline-td3bc-composed",
      argv=("{python}", "experiments/train_offline.py", "--config=configs/td3bc.py:tiny",
            "--workdir={run}", "--config.num_steps=200", "--config.updates_per_dispatch=50",
            "--config.checkpoint_every=100", "--config.log_every=50",
            "--config.eval_episodes=0", "--config.augment.source=generator:{ref:train_diffusion-gta}",
            "--config.augment.every=50", "--config.augment.round_size=8",
            "--config.augment.capacity=224"),
      faults=("checkpoint.commit:2",), requires=("train_diffusion-gta",))
  ref, _ = kh.reference(root, job)
  result = kh.kill_point(root, job, ref, fault="checkpoint.commit:2")
  assert result.killed and result.attempts[0].fault_fired == "checkpoint.commit:2"
  assert result.differences == []  # every checkpointed array (buffer and RNG included)


# ------------------------------------------------------------------ agents and methods


@pytest.mark.parametrize("agent", ["td3bc", "iql", "cql", "mcq", "dtql"])
def test_every_agent_trains_with_generation_rounds(gens, agent):
  c = _config(gens["gta"], agent=agent, every=5)
  c.num_steps = 10
  c.updates_per_dispatch = 5
  c.log_every = 5
  c.batch_size = 32
  if agent == "td3bc":
    c.augment.s4rl_std = 3e-4  # S4RL on top of the composed batch
  out = offline.train_offline(c, None)
  assert int(out["aug_state"].rounds) == 3  # fill 2 + one before update 5
  assert out["augment"]["generated_transitions"] == 3 * GTA_ROWS
  losses = {k: v for k, v in out.items() if k.startswith("train/")}
  assert losses and all(np.all(np.isfinite(v)) for v in losses.values()), losses


@pytest.mark.parametrize("mode", ["mix", "replace"])
def test_synther_generator(synther_gen, mode):
  c = _config(synther_gen, mode=mode, synthetic_ratio=0.5, capacity=128, round_size=64, every=10)
  out = offline.train_offline(c, None)
  aug = out["aug_state"]
  assert int(aug.rounds) == 3 and int(aug.buffer.size) == 128 and int(aug.generated) == 192
  assert np.all(np.isin(np.asarray(aug.buffer.data.terminals), [0.0, 1.0]))
  assert np.isfinite(out["train/critic_loss"])


def test_total_generated_formula():
  s = composed.Settings(method="gta", mode="concat", synthetic_ratio=0.5, capacity=1_000_000,
                        round_size=1000, rows_per_round=31_000, every=7700, warm_start=True,
                        placement="dispatch")
  # The docs' recipe for the papers' 5M at 1M updates.
  assert composed.total_generated(s, 1_000_000) == 1_000_000 + 129 * 31_000 == 4_999_000


# ------------------------------------------------------------------ bad input


def test_bad_input(gens, tmp_path):
  c = _config(gens["gta"])
  c.dataset = "embedded:hopper-medium-expert"
  with pytest.raises(ValueError, match="trained on .*hopper-medium-replay"):
    offline.train_offline(c, None)
  c = _config(gens["gta"])
  c.augment.path = "npz:/nonexistent.npz"
  with pytest.raises(ValueError, match="augment.path and config.augment.source"):
    offline.train_offline(c, None)
  with pytest.raises(ValueError, match="augment.every=15 must be a multiple"):
    offline.train_offline(_config(gens["gta"], every=15), None)
  with pytest.raises(ValueError, match="augment.capacity=10 is smaller"):
    offline.train_offline(_config(gens["gta"], capacity=10), None)
  with pytest.raises(ValueError, match="generator:WORKDIR"):
    offline.train_offline(_config("", ), None)
  with pytest.raises(ValueError, match="not a directory"):
    offline.train_offline(_config(str(tmp_path / "missing")), None)
