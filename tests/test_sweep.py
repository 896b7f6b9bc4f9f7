"""Sweeps (jaxaug/train/sweep.py, experiments/sweep.py): the spec language, grouping, per-point
results equal to separate runs, 4 devices equal 1, kill + resume exact, the report."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import td3bc as td3bc_config
from jaxaug.agents import td3bc
from jaxaug.train import sweep as sweep_lib
from tests.helpers import sweep_cli
from jaxaug.train.offline import train_offline
from jaxaug.types import EnvSpec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = "agent.alpha=[1,5] seed=range(2)"
# A short run: 2 dispatches of 50 updates, metrics and an evaluation episode at both.
SHORT = dict(num_steps=100, updates_per_dispatch=50, log_every=50, eval_every=50,
             eval_episodes=1, checkpoint_every=50, batch_size=64)


_env = sweep_cli.subprocess_env


def _config(**over):
  c = td3bc_config.get_config("tiny")
  c.update(dict(SHORT, **over))
  return c


def _cli(workdir, **over):
  return sweep_cli.sweep_cli("td3bc.py", SPEC, workdir, dict(SHORT, **over))


def _rows(path):
  with open(os.path.join(path, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


def _final_arrays(checkpoint_dir):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  steps = sorted(int(d) for d in os.listdir(checkpoint_dir) if d.isdigit())
  path = os.path.join(checkpoint_dir, str(steps[-1]), "state")
  ckptr = ocp.StandardCheckpointer()
  meta = ckptr.metadata(path)
  meta = getattr(meta, "item_metadata", meta)
  meta = getattr(meta, "tree", meta)
  # Restore onto this process's first device whatever mesh saved it (4 fake devices, say).
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), meta)
  restored = ckptr.restore(path, target)
  return steps[-1], [np.asarray(x) for x in jax.tree.leaves(restored)]


# ----------------------------------------------------------------------------- spec language
def test_grid_is_the_product_over_keys_last_key_fastest():
  pts = sweep_lib.parse_grid("agent.alpha=[1, 2.5] seed=range(3)")
  assert pts == [{"agent.alpha": a, "seed": s} for a in (1, 2.5) for s in range(3)]
  assert sweep_lib.parse_grid("seed=range(2,8,3)") == [{"seed": 2}, {"seed": 5}]
  pts = sweep_lib.parse_grid("agent.hidden_dims=[(32, 32), (64, 64, 64)] dataset=[embedded:a]")
  assert pts == [{"agent.hidden_dims": (32, 32), "dataset": "embedded:a"},
                 {"agent.hidden_dims": (64, 64, 64), "dataset": "embedded:a"}]
  assert sweep_lib.parse_grid("agent_name=['iql','td3bc']")[1] == {"agent_name": "td3bc"}


@pytest.mark.parametrize("spec,match", [
    ("", "empty"), ("seed", "KEY="), ("seed=3", "expected a list"), ("seed=range(a)", "range"),
    ("seed=[1] seed=[2]", "twice"), ("seed=[1", "unbalanced"), ("seed=[]", "no values"),
    ("seed=range(1,2,3,4)", "range")])
def test_grid_errors_name_the_problem(spec, match):
  with pytest.raises(ValueError, match=match):
    sweep_lib.parse_spec(spec)


def test_sweep_file_get_sweep(tmp_path):
  f = tmp_path / "my_sweep.py"
  f.write_text("def get_sweep():\n  return [{'agent.alpha': a, 'seed': 0} for a in (1, 2)]\n")
  assert sweep_lib.parse_spec(str(f)) == [{"agent.alpha": 1, "seed": 0},
                                          {"agent.alpha": 2, "seed": 0}]
  bad = tmp_path / "bad_sweep.py"
  bad.write_text("def get_sweep():\n  return 3\n")
  with pytest.raises(ValueError, match="list of dicts"):
    sweep_lib.parse_spec(str(bad))
  with pytest.raises(ValueError, match="no such sweep file"):
    sweep_lib.parse_spec(str(tmp_path / "missing.py"))


def test_unknown_keys_and_num_seeds_are_refused():
  c = _config()
  with pytest.raises(ValueError, match=r"'agent.alfa'.*no field 'alfa' under agent"):
    sweep_lib.validate_points(c, [{"agent.alfa": 1.0}], "configs/td3bc.py:tiny")
  with pytest.raises(ValueError, match="no field 'nope'"):
    sweep_lib.validate_points(c, [{"nope.x": 1}])
  with pytest.raises(ValueError, match="num_seeds"):
    sweep_lib.validate_points(c, [{"num_seeds": 2}])


def test_overrides_coerce_ints_and_lists():
  c = sweep_lib.apply_overrides(_config(), {"agent.alpha": 5, "agent.hidden_dims": [8, 8]})
  assert isinstance(c.agent.alpha, float) and c.agent.alpha == 5.0
  assert tuple(c.agent.hidden_dims) == (8, 8)
  with pytest.raises(ValueError, match="agent.policy_delay"):
    sweep_lib.apply_overrides(_config(), {"agent.policy_delay": "two"})
  assert sweep_lib.point_name(3, {"agent.alpha": 2.5, "seed": 1}) == "3_alpha=2.5_seed=1"
  assert sweep_lib.point_name(0, {"agent.hidden_dims": (32, 32)}) == "0_hidden_dims=32x32"


# ----------------------------------------------------------------------------- grouping
def test_float_hyperparameters_and_seeds_share_a_program_structure_does_not():
  base = _config()
  points = (sweep_lib.parse_grid("agent.alpha=[1,5] agent.critic_lr=[1e-4,3e-4] seed=range(2)")
            + [{"agent.hidden_dims": (32, 32)}, {"agent.hidden_dims": (32, 32), "seed": 4},
               {"batch_size": 32}, {"agent.policy_delay": 3}])
  configs = [sweep_lib.apply_overrides(base, p) for p in points]
  groups = sweep_lib.group_points(configs)
  assert groups == [list(range(8)), [8, 9], [10], [11]]
  # The state structure agrees inside a group and differs across (what stacking relies on).
  spec = EnvSpec(11, 3)
  sig = lambda c: sweep_lib.state_signature(td3bc.init(jax.random.key(0), spec, c.agent))
  assert sig(configs[0]) == sig(configs[7])
  assert sig(configs[0]) != sig(configs[8])  # network sizes
  assert sig(configs[0]) != sig(configs[11])  # a static int hyperparameter


def test_pad_and_device_choice():
  assert sweep_lib.choose_sweep_devices(4, 4) == 4
  assert sweep_lib.choose_sweep_devices(3, 4) == 2  # largest divisor of 4 not above 3
  assert sweep_lib.choose_sweep_devices(16, 8) == 8
  assert sweep_lib.pad_indices(3, 2) == [0, 1, 2, 2]
  assert sweep_lib.pad_indices(4, 4) == [0, 1, 2, 3]
  with pytest.raises(ValueError, match="sweep_devices"):
    sweep_lib.choose_sweep_devices(4, 4, requested=3)


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
  """The 4-point sweep (2 alphas x 2 seeds) on this process's devices."""
  workdir = str(tmp_path_factory.mktemp("sweep") / "run")
  points = sweep_lib.parse_spec(SPEC)
  results = sweep_lib.run_offline_sweep(_config(), points, workdir,
                                        where="configs/td3bc.py:tiny", spec=SPEC)
  return workdir, points, results


def test_points_equal_separate_runs(sweep_run, tmp_path):
  workdir, points, results = sweep_run
  with open(os.path.join(workdir, "sweep.json")) as f:
    manifest = json.load(f)
  assert [p["overrides"] for p in manifest["points"]] == points
  assert manifest["groups"] == [{"index": 0, "points": [0, 1, 2, 3]}]
  finals = []
  for i, point in enumerate(points):
    pdir = os.path.join(workdir, "points", manifest["points"][i]["name"])
    single_dir = str(tmp_path / f"single{i}")
    c = sweep_lib.apply_overrides(_config(), point)
    single = train_offline(c, single_dir)
    # Same files, same config, same records (metrics and evaluations) to float tolerance.
    assert sorted(os.listdir(pdir)) == sorted(
        n for n in os.listdir(single_dir) if n != "checkpoints")
    with open(os.path.join(pdir, "config.json")) as a, \
        open(os.path.join(single_dir, "config.json")) as b:
      assert json.load(a) == json.load(b)
    ra, rb = _rows(pdir), _rows(single_dir)
    assert [r["step"] for r in ra] == [r["step"] for r in rb] == [50, 100]
    assert set(ra[0]) == set(rb[0]) and "eval/normalized_score" in ra[0]
    for x, y in zip(ra, rb):
      for k in x:
        np.testing.assert_allclose(x[k], y[k], rtol=2e-5, atol=1e-5, err_msg=f"{i} {k}")
    with open(os.path.join(pdir, "summary.json")) as f:
      summary = json.load(f)
    assert set(summary) == {k for k in single if k != "state"}
    for k, v in summary.items():
      if isinstance(v, float):
        np.testing.assert_allclose(v, single[k], rtol=2e-5, atol=1e-5, err_msg=k)
      else:
        assert v == single[k], k
    # Parameters, optimiser states and hyperparameter leaves.
    la, lb = jax.tree.leaves(results[i]["state"]), jax.tree.leaves(single["state"])
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-5, atol=2e-5)
    assert float(results[i]["state"].hp.alpha) == float(point["agent.alpha"])
    finals.append(results[i]["state"])
  # The points really differ: another alpha (same seed), another seed (same alpha).
  w = lambda s: np.asarray(jax.tree.leaves(s.actor.params)[-1])
  assert not np.allclose(w(finals[0]), w(finals[2]))
  assert not np.allclose(w(finals[0]), w(finals[1]))


@pytest.fixture(scope="module")
def four_device_run(tmp_path_factory):
  """The same sweep in a subprocess with 4 fake CPU devices (one point per device)."""
  workdir = str(tmp_path_factory.mktemp("sweep4") / "run")
  r = subprocess.run(_cli(workdir), env=_env(
      XLA_FLAGS="--xla_force_host_platform_device_count=4"), capture_output=True, text=True,
      timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  return workdir


def test_four_devices_equal_one(sweep_run, four_device_run):
  workdir1, _, _ = sweep_run
  with open(os.path.join(four_device_run, "sweep.json")) as f:
    manifest = json.load(f)
  assert manifest["num_devices"] == 4
  for p in manifest["points"]:
    ra = _rows(os.path.join(four_device_run, "points", p["name"]))
    rb = _rows(os.path.join(workdir1, "points", p["name"]))
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    for x, y in zip(ra, rb):
      for k in x:
        np.testing.assert_allclose(x[k], y[k], rtol=2e-5, atol=1e-5, err_msg=k)
  step_a, a = _final_arrays(os.path.join(four_device_run, "groups", "0", "checkpoints"))
  step_b, b = _final_arrays(os.path.join(workdir1, "groups", "0", "checkpoints"))
  assert step_a == step_b == 100 and len(a) == len(b)
  for x, y in zip(a, b):
    assert x.shape == y.shape and x.shape[0] == 4  # the sweep axis
    np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-5)


def test_kill_and_resume_is_exact(four_device_run, tmp_path):
  """SIGKILL the 4-device sweep after its first checkpoint, re-run the same command: the final
  checkpoint (stacked states and keys) and every point's metrics equal the uninterrupted run."""
  workdir = str(tmp_path / "killed")
  env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=4")
  cmd = _cli(workdir, num_steps=300)
  full = str(tmp_path / "full")
  r = subprocess.run(_cli(full, num_steps=300), env=env, capture_output=True, text=True,
                     timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  ckdir = os.path.join(workdir, "groups", "0", "checkpoints")
  done = sweep_cli.kill_after_first_checkpoint(cmd, env, ckdir)
  assert done and max(done) < 300, done  # killed mid-run
  r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "Resumed from" in r.stderr
  step_a, a = _final_arrays(os.path.join(full, "groups", "0", "checkpoints"))
  step_b, b = _final_arrays(ckdir)
  assert step_a == step_b == 300
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  with open(os.path.join(full, "sweep.json")) as f:
    names = [p["name"] for p in json.load(f)["points"]]
  for n in names:
    ra, rb = _rows(os.path.join(full, "points", n)), _rows(os.path.join(workdir, "points", n))
    assert [x["step"] for x in ra] == [x["step"] for x in rb] == [50, 100, 150, 200, 250, 300]
    for x, y in zip(ra, rb):
      assert x == y
  # Another sweep in the same workdir is refused, naming the file.
  bad = cmd[:]
  bad[3] = "--sweep=agent.alpha=[2] seed=range(2)"
  r = subprocess.run(bad, env=env, capture_output=True, text=True, timeout=300)
  assert r.returncode != 0 and "sweep.json" in r.stderr, r.stderr[-2000:]


def test_report_table_best_point_and_plots(sweep_run):
  workdir, points, _ = sweep_run
  sys.path.insert(0, os.path.join(ROOT, "experiments"))
  import sweep_report  # pylint: disable=g-import-not-at-top
  rep = sweep_report.report(workdir)
  finals = {}
  for p in json.load(open(os.path.join(workdir, "sweep.json")))["points"]:
    with open(os.path.join(workdir, "points", p["name"], "summary.json")) as f:
      finals.setdefault(p["overrides"]["agent.alpha"], []).append(
          json.load(f)["eval/normalized_score"])
  assert rep["keys"] == ["agent.alpha"]
  by_alpha = {r["hyperparameters"]["agent.alpha"]: r for r in rep["rows"]}
  assert set(by_alpha) == {1, 5}
  for a, vals in finals.items():
    assert by_alpha[a]["num_seeds"] == 2
    np.testing.assert_allclose(by_alpha[a]["mean"], np.mean(vals))
    np.testing.assert_allclose(by_alpha[a]["std"], np.std(vals))
  best = max(finals, key=lambda a: np.mean(finals[a]))
  assert rep["best"]["hyperparameters"] == {"agent.alpha": best}
  assert "**best**" in rep["text"] and "+-" in rep["text"]
  with open(os.path.join(workdir, "report.json")) as f:
    assert json.load(f)["best"]["hyperparameters"] == {"agent.alpha": best}
  assert os.path.exists(os.path.join(workdir, "report.md"))
  for name in ("report_agent.alpha.png", "report_curves.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 1000
  r = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "sweep_report.py"),
                      workdir, "--metric=eval/nope"], env=_env(), capture_output=True,
                     text=True, timeout=300)
  assert r.returncode != 0 and "eval/nope" in r.stderr


def _free_port():
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_equal_one_process(four_device_run, tmp_path):
  """Multi-host for real: two processes on localhost (jax.distributed with a localhost
  coordinator, 2 fake CPU devices each, gloo collectives), one sweep whose axis spans the 4
  devices of both; per-point results equal the single-process 4-device run."""
  workdir = str(tmp_path / "mh")
  port = _free_port()
  procs = []
  for pid in range(2):
    env = _env(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_COORDINATOR_ADDRESS=f"localhost:{port}", JAX_NUM_PROCESSES="2",
               JAX_PROCESS_ID=str(pid))
    procs.append(subprocess.Popen(_cli(workdir, distributed=True), env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  outs = []
  try:
    for p in procs:
      outs.append(p.communicate(timeout=900))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  with open(os.path.join(workdir, "sweep.json")) as f:
    manifest = json.load(f)
  assert manifest["num_devices"] == 4 and manifest["num_processes"] == 2
  for p in manifest["points"]:
    ra = _rows(os.path.join(workdir, "points", p["name"]))
    rb = _rows(os.path.join(four_device_run, "points", p["name"]))
    assert [r["step"] for r in ra] == [r["step"] for r in rb] == [50, 100]
    for x, y in zip(ra, rb):
      for k in x:
        np.testing.assert_allclose(x[k], y[k], rtol=1e-5, atol=1e-6, err_msg=k)
  step_a, a = _final_arrays(os.path.join(workdir, "groups", "0", "checkpoints"))
  step_b, b = _final_arrays(os.path.join(four_device_run, "groups", "0", "checkpoints"))
  assert step_a == step_b == 100
  for x, y in zip(a, b):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_a_static_float_hyperparameter_splits_the_group():
  """An agent keeping a float in static data (not a leaf) must not share a stacked program."""
  import flax.struct  # pylint: disable=g-import-not-at-top

  class State(flax.struct.PyTreeNode):
    w: jax.Array
    alpha: float = flax.struct.field(pytree_node=False)

  a, b, c = State(np.zeros(3), 1.0), State(np.ones(3), 1.0), State(np.zeros(3), 5.0)
  sigs = [sweep_lib.state_signature(s) for s in (a, b, c)]
  assert sweep_lib.split_by_signature(sigs) == [[0, 1], [2]]
  stacked = sweep_lib.stack_states([a, b])
  assert stacked.w.shape == (2, 3) and stacked.alpha == 1.0


def test_a_float_that_is_no_leaf_is_found_by_initialising():
  base = _config()
  configs = [sweep_lib.apply_overrides(base, {"agent.alpha": a, "agent.tau": t})
             for a, t in ((1.0, 0.005), (5.0, 0.01))]
  assert sweep_lib.varying_leaf_fields(configs) == ["agent.alpha", "agent.tau"]
  spec = EnvSpec(11, 3)

  def init_with(c):  # tau as a Python constant: not in the state
    s = td3bc.init(jax.random.key(0), spec, c.agent)
    return s.replace(hp=s.hp.replace(tau=0.005))
  assert sweep_lib.constant_fields(configs, init_with) == ["agent.tau"]
  real = lambda c: td3bc.init(jax.random.key(0), spec, c.agent)
  assert sweep_lib.constant_fields(configs, real) == []


def test_points_and_batches_both_sharded_equal_one_device(sweep_run, tmp_path):
  """2 points on 4 devices: a (sweep=2, data=2) mesh, each point's batch sharded over `data`."""
  workdir1, _, _ = sweep_run
  workdir = str(tmp_path / "2x2")
  cmd = _cli(workdir)
  cmd[3] = "--sweep=agent.alpha=[1,5] seed=[1]"
  r = subprocess.run(cmd, env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=4"),
                     capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  assert sweep_lib.choose_sweep_devices(2, 4) == 2
  with open(os.path.join(workdir1, "sweep.json")) as f:
    ref = {json.dumps(p["overrides"], sort_keys=True): p["name"] for p in json.load(f)["points"]}
  with open(os.path.join(workdir, "sweep.json")) as f:
    points = json.load(f)["points"]
  assert len(points) == 2
  for p in points:
    ra = _rows(os.path.join(workdir, "points", p["name"]))
    rb = _rows(os.path.join(workdir1, "points", ref[json.dumps(p["overrides"], sort_keys=True)]))
    assert [x["step"] for x in ra] == [x["step"] for x in rb] == [50, 100]
    for x, y in zip(ra, rb):
      for k in x:
        np.testing.assert_allclose(x[k], y[k], rtol=2e-5, atol=1e-5, err_msg=k)


# ----------------------------------------------------------------------------- generators
# A few updates of the tiny presets: 2 dispatches of 2 updates, metrics and a checkpoint at both.
GEN_SHORT = dict(num_steps=4, updates_per_dispatch=2, log_every=2, checkpoint_every=2,
                 batch_size=16)


def _gen_config(module, **over):
  c = module.get_config("tiny")
  c.update(dict(GEN_SHORT, **over))
  return c


def test_generator_float_leaves_share_a_program_optimizer_constants_split():
  """diffusion.* floats group by config; initialising then keeps the leaves (learning rate,
  p_mean) together and splits the optimiser's Python constants (b1, grad_clip, weight_decay)
  and the static sigma_data by value (SynthER's learner: the same as GTA's)."""
  from configs import synther as synther_config  # pylint: disable=g-import-not-at-top
  from jaxaug.augment import pipeline  # pylint: disable=g-import-not-at-top
  from jaxaug.train.loop import seed_keys  # pylint: disable=g-import-not-at-top
  base = _gen_config(synther_config)
  assert sweep_lib.is_generator_config(base) and sweep_lib.leaf_prefix(base) == "diffusion."
  points = [{}, {"diffusion.learning_rate": 1e-3, "seed": 1}, {"diffusion.p_mean": -1.0},
            {"diffusion.b1": 0.8}, {"diffusion.grad_clip": 0.5},
            {"diffusion.weight_decay": 1e-4}, {"diffusion.sigma_data": 0.5},
            {"diffusion.net_kwargs.width": 32}]
  configs = [sweep_lib.apply_overrides(base, p) for p in points]
  groups = sweep_lib.group_points(configs)
  assert groups == [list(range(7)), [7]]  # only the network size leaves by config
  _, data = pipeline.prepare_data(base)
  init = lambda c, k: jax.device_get(jax.jit(pipeline.init_fn(c, data))(k))
  states = [init(configs[i], seed_keys(int(configs[i].seed), 1)[0]) for i in groups[0]]
  init0 = lambda c: init(c, seed_keys(0, 1)[0])
  group = [configs[i] for i in groups[0]]
  assert sorted(sweep_lib.constant_fields(group, init0)) == [
      "diffusion.b1", "diffusion.grad_clip", "diffusion.sigma_data", "diffusion.weight_decay"]
  assert sorted(sweep_lib.split_group(group, states, init0)) == [[0, 1, 2], [3], [4], [5], [6]]
  # sigma_data alone is caught by the state signature (a static field of `hp`) as well.
  assert sweep_lib.state_signature(states[6]) != sweep_lib.state_signature(states[0])


def test_generator_points_equal_separate_runs(tmp_path):
  """A SynthER sweep (2 learning rates x 2 seeds in one program, plus a b1 point that needs its
  own program) equals separate train_generator runs: metrics at both log steps, summary, every
  array of the final state and the per-point checkpoint."""
  from configs import synther as synther_config  # pylint: disable=g-import-not-at-top
  from jaxaug.augment import pipeline  # pylint: disable=g-import-not-at-top
  base = _gen_config(synther_config)
  points = [{"diffusion.learning_rate": lr, "seed": s} for lr in (3e-4, 1e-3) for s in (0, 1)]
  points.append({"diffusion.learning_rate": 1e-3, "diffusion.b1": 0.5, "seed": 0})
  results = sweep_lib.run_sweep(base, points, str(tmp_path / "sweep"))
  with open(tmp_path / "sweep" / "sweep.json") as f:
    manifest = json.load(f)
  assert [g["points"] for g in manifest["groups"]] == [[0, 1, 2, 3, 4]]
  # One structure group, two programs (groups/<g>_<first point> when a group splits).
  assert os.path.isdir(tmp_path / "sweep" / "groups" / "0_0" / "checkpoints")
  assert os.path.isdir(tmp_path / "sweep" / "groups" / "0_4" / "checkpoints")  # b1's program
  for i, p in enumerate(points):
    single = str(tmp_path / f"single{i}")
    state, last = pipeline.train_generator(sweep_lib.apply_overrides(base, p), single)
    pdir = str(tmp_path / "sweep" / "points" / sweep_lib.point_name(i, p))
    a, b = _rows(single), _rows(pdir)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [2, 4]
    for ra, rb in zip(a, b):
      for k in ("train/loss", "train/grad_norm"):
        np.testing.assert_allclose(rb[k], ra[k], rtol=2e-5, err_msg=f"point {i} {k}")
    with open(os.path.join(pdir, "summary.json")) as f:
      np.testing.assert_allclose(json.load(f)["train/loss"], float(last["train/loss"]),
                                 rtol=2e-5)
    with open(os.path.join(single, "config.json")) as f1, open(
        os.path.join(pdir, "config.json")) as f2:
      assert json.load(f1) == json.load(f2)
    for x, y in zip(jax.tree.leaves(state), jax.tree.leaves(results[i]["state"])):
      np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=2e-5, atol=1e-6)
    step_a, arrays_a = _final_arrays(os.path.join(single, "checkpoints"))
    step_b, arrays_b = _final_arrays(os.path.join(pdir, "checkpoints"))
    assert step_a == step_b == 4 and len(arrays_a) == len(arrays_b)
    for x, y in zip(arrays_a, arrays_b):
      np.testing.assert_allclose(y, x, rtol=2e-5, atol=1e-6)
  # The two learning rates really trained differently (the leaf is not ignored).
  assert not np.allclose(jax.tree.leaves(results[0]["state"].params)[0],
                         jax.tree.leaves(results[2]["state"].params)[0])


def test_dtql_two_phase_points_equal_separate_runs(tmp_path):
  """DTQL's pre-training phase (BC + critic, then the policy phase: a lax.cond on each point's
  own step) inside one sweep program: 2 trust-region weights x seeds equal train_offline runs."""
  from configs import dtql as dtql_config  # pylint: disable=g-import-not-at-top
  base = dtql_config.get_config("tiny")
  base.update(dict(num_steps=4, updates_per_dispatch=2, log_every=2, eval_every=0,
                   eval_episodes=0, checkpoint_every=0, batch_size=16))
  base.agent.pretrain_steps = 2
  points = [{"agent.trust_region_weight": 1.0, "seed": 0},
            {"agent.trust_region_weight": 2.0, "seed": 1}]
  results = sweep_lib.run_sweep(base, points, str(tmp_path / "sweep"))
  with open(tmp_path / "sweep" / "sweep.json") as f:
    assert [g["points"] for g in json.load(f)["groups"]] == [[0, 1]]
  assert os.path.isdir(tmp_path / "sweep" / "groups" / "0" / "checkpoints")  # one program
  for i, p in enumerate(points):
    single = str(tmp_path / f"single{i}")
    out = train_offline(sweep_lib.apply_overrides(base, p), single)
    pdir = str(tmp_path / "sweep" / "points" / sweep_lib.point_name(i, p))
    a, b = _rows(single), _rows(pdir)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [2, 4]
    for ra, rb in zip(a, b):
      assert set(ra) == set(rb)
      for k in ra:
        if k.startswith("train/"):
          np.testing.assert_allclose(rb[k], ra[k], rtol=2e-5, atol=1e-6,
                                     err_msg=f"point {i} {k} step {ra['step']}")
    la, lb = jax.tree.leaves(results[i]["state"]), jax.tree.leaves(out["state"])
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-5, atol=1e-6)
    assert float(results[i]["state"].hp.trust_region_weight) == p["agent.trust_region_weight"]


def test_gta_points_equal_separate_runs(tmp_path):
  """GTA (MixerUnet, condition dropout with a leaf probability): 2 points in one program, with
  another learning rate, seed and cond_dropout each, equal separate train_generator runs."""
  from configs import gta as gta_config  # pylint: disable=g-import-not-at-top
  from jaxaug.augment import pipeline  # pylint: disable=g-import-not-at-top
  base = _gen_config(gta_config)
  points = [{"diffusion.learning_rate": 3e-4, "diffusion.cond_dropout": 0.25, "seed": 0},
            {"diffusion.learning_rate": 1e-3, "diffusion.cond_dropout": 0.5, "seed": 1}]
  results = sweep_lib.run_sweep(base, points, str(tmp_path / "sweep"))
  assert os.path.isdir(tmp_path / "sweep" / "groups" / "0" / "checkpoints")  # one program
  for i, p in enumerate(points):
    single = str(tmp_path / f"single{i}")
    state, _ = pipeline.train_generator(sweep_lib.apply_overrides(base, p), single)
    pdir = str(tmp_path / "sweep" / "points" / sweep_lib.point_name(i, p))
    for ra, rb in zip(_rows(single), _rows(pdir)):
      assert ra["step"] == rb["step"]
      np.testing.assert_allclose(rb["train/loss"], ra["train/loss"], rtol=2e-5)
    # Every array to 2e-5 (as the TD3+BC test) except the bias of the last 3x3 conv: a GroupNorm
    # with one channel per group follows it (MixerUnet's output block), so its gradient is zero
    # in exact arithmetic and float noise, which Adam normalises into steps of about the
    # learning rate (the vmapped program rounds differently). Its values stay within that bound.
    lr, bad = p["diffusion.learning_rate"], []
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(state)[0],
                            jax.tree.leaves(results[i]["state"])):
      name, x, y = jax.tree_util.keystr(path), np.asarray(x), np.asarray(y)
      if "['Conv_1']['bias']" in name and "params" in name:
        assert np.max(np.abs(y - x)) <= base.num_steps * lr, name
        assert np.max(np.abs(x)) <= base.num_steps * lr, name  # noise-sized: never learned
      elif not np.allclose(y, x, rtol=2e-5, atol=2e-5):
        bad.append((name, float(np.max(np.abs(y - x)))))
    assert not bad, bad
    assert float(results[i]["state"].hp.cond_dropout) == p["diffusion.cond_dropout"]
