"""Bad input through every door: dataset files, config fields, CLI flags, checkpoints, workdirs.

Each row feeds one bad input through the door a user would use and checks that the error names
the file / field / flag and what was expected, and that nothing half-written is left behind
(docs/bad_input.md lists the rows and their outcomes).
"""

import os
import shutil
import subprocess
import sys

import h5py
import jax
import numpy as np
import pytest

from jaxaug import agents as agents_lib
from jaxaug.configs_io import load_config_file, load_config_module
from jaxaug.data import TRANSITION_FIELDS, OfflineDataset, load_dataset, save_d4rl_hdf5, save_npz
from jaxaug.data.loaders import save_minari
from jaxaug.data.normalize import load_stats
from jaxaug.diffusion import train as dtrain
from jaxaug.train import config_io
from jaxaug.train.checkpoint import Checkpointer
from jaxaug.train.loop import LoopConfig
from jaxaug.types import EnvSpec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------------
# Dataset files: every loader.


def episodes(lengths=(5, 7, 4), obs_dim=3, act_dim=2, seed=0) -> OfflineDataset:
  """Episodes (terminal, timeout, timeout) with next_observations[i] == observations[i+1]."""
  rng = np.random.default_rng(seed)
  cols = {k: [] for k in TRANSITION_FIELDS}
  for i, t in enumerate(lengths):
    s = rng.normal(size=(t + 1, obs_dim)).astype(np.float32)
    cols["observations"].append(s[:-1])
    cols["next_observations"].append(s[1:])
    cols["actions"].append(rng.uniform(-1, 1, (t, act_dim)).astype(np.float32))
    cols["rewards"].append(rng.normal(size=t).astype(np.float32))
    term, tout = np.zeros(t, np.float32), np.zeros(t, np.float32)
    (term if i == 0 else tout)[-1] = 1.0
    cols["terminals"].append(term)
    cols["timeouts"].append(tout)
  return OfflineDataset(**{k: np.concatenate(v) for k, v in cols.items()},
                        infos={"qpos": rng.normal(size=(sum(lengths), 2)).astype(np.float32)},
                        metadata={"env_id": "Hopper-v5"})


def arrays(**change):
  ds = episodes()
  out = {k: getattr(ds, k) for k in TRANSITION_FIELDS}
  out.update(change)
  return {k: v for k, v in out.items() if v is not None}


def npz(tmp, a, name="bad.npz", metadata=None):
  p = os.path.join(tmp, name)
  a = dict(a)
  if metadata is not None:
    a["metadata"] = np.array(metadata)
  with open(p, "wb") as f:
    np.savez(f, **a)
  return f"npz:{p}", p


def hdf5(tmp, a, name="bad.hdf5"):
  p = os.path.join(tmp, name)
  with h5py.File(p, "w") as f:
    for k, v in a.items():
      f.create_dataset(k, data=v)
  return f"d4rl:{p}", p


def truncated(tmp, writer, name):
  full = os.path.join(tmp, "full_" + name)
  big = episodes(lengths=(400,) * 5)
  writer(big, full)
  data = open(full, "rb").read()
  p = os.path.join(tmp, name)
  with open(p, "wb") as f:
    f.write(data[:len(data) // 2])  # cut in half
  return p


def minari(tmp, edit=None, meta_text=None, cut=False):
  d = os.path.join(tmp, "mds")
  save_minari(episodes(), d, env_id="Hopper-v5")
  h5 = os.path.join(d, "data", "main_data.hdf5")
  if edit is not None:
    with h5py.File(h5, "a") as f:
      edit(f)
  if meta_text is not None:
    with open(os.path.join(d, "data", "metadata.json"), "w") as f:
      f.write(meta_text)
  if cut:
    data = open(h5, "rb").read()
    with open(h5, "wb") as f:
      f.write(data[:len(data) // 2])
  return f"minari:{d}", h5


def _replace(f, key, value):
  del f[key]
  f[key] = value


def _empty_file(tmp, name):
  p = os.path.join(tmp, name)
  open(p, "wb").close()
  return p


def pre(prefix, path):
  """(spec, the path the message must name)."""
  return prefix + path, path


def _dir(tmp, name):
  p = os.path.join(tmp, name)
  os.makedirs(p)
  return p


nan_rewards = episodes().rewards.copy()
nan_rewards[6] = np.nan

# (row id, make(tmp) -> (spec, text the message must name), expected substrings)
DATA_CASES = [
    ("npz-missing-key", lambda t: npz(t, arrays(rewards=None)), ["'rewards'", "missing"]),
    ("hdf5-missing-key", lambda t: hdf5(t, arrays(actions=None)), ["'actions'", "missing"]),
    ("npz-string-dtype", lambda t: npz(t, arrays(observations=arrays()["observations"]
                                                 .astype(str))),
     ["'observations'", "dtype", "expected float or integer"]),
    ("hdf5-bytes-dtype", lambda t: hdf5(t, arrays(rewards=arrays()["rewards"].astype("S6"))),
     ["'rewards'", "dtype", "expected float or integer"]),
    ("npz-complex-dtype", lambda t: npz(t, arrays(actions=arrays()["actions"] + 0j)),
     ["'actions'", "complex", "expected float or integer"]),
    ("npz-bool-actions", lambda t: npz(t, arrays(actions=arrays()["actions"] > 0)),
     ["'actions'", "bool", "expected float or integer"]),
    ("npz-string-infos", lambda t: npz(t, {**arrays(), "infos/name": np.array(["a"] * 16)}),
     ["'infos/name'", "dtype"]),
    ("npz-nan", lambda t: npz(t, arrays(rewards=nan_rewards)), ["'rewards'", "NaN or Inf",
                                                                "index 6"]),
    ("hdf5-inf", lambda t: hdf5(t, arrays(observations=np.where(
        np.arange(16)[:, None] == 2, np.inf, arrays()["observations"]).astype(np.float32))),
     ["'observations'", "NaN or Inf", "index 2"]),
    ("npz-flags-not-binary", lambda t: npz(t, arrays(terminals=arrays()["terminals"] * 2)),
     ["'terminals'", "0 or 1"]),
    ("npz-rewards-2d", lambda t: npz(t, arrays(rewards=np.zeros((16, 2), np.float32))),
     ["'rewards'", "shape (N,)"]),
    ("npz-obs-3d", lambda t: npz(t, arrays(observations=np.zeros((16, 3, 1), np.float32))),
     ["'observations'", "2-D"]),
    ("npz-obs-scalar", lambda t: npz(t, arrays(observations=np.float32(1.0))),
     ["'observations'", "scalar"]),
    ("npz-next-obs-dim", lambda t: npz(t, arrays(next_observations=np.zeros((16, 2),
                                                                            np.float32))),
     ["'next_observations'", "shape"]),
    ("npz-length-mismatch", lambda t: npz(t, arrays(actions=np.zeros((15, 2), np.float32))),
     ["'actions'", "15 rows", "expected 16"]),
    ("npz-infos-length", lambda t: npz(t, {**arrays(), "infos/qpos": np.zeros((3, 2))}),
     ["'infos/qpos'", "3 rows"]),
    ("npz-metadata-not-object", lambda t: npz(t, arrays(), metadata="[1, 2]"),
     ["'metadata'", "JSON object"]),
    ("npz-metadata-not-json", lambda t: npz(t, arrays(), metadata="{oops"),
     ["'metadata'", "JSON"]),
    ("npz-zero-rows", lambda t: npz(t, {k: v[:0] for k, v in arrays().items()}),
     ["empty dataset"]),
    ("npz-empty-file", lambda t: pre("npz:", _empty_file(t, "e.npz")), ["empty file",
                                                                            "npz"]),
    ("hdf5-empty-file", lambda t: pre("d4rl:", _empty_file(t, "e.hdf5")),
     ["empty file", "D4RL hdf5"]),
    ("hdf5-no-datasets", lambda t: hdf5(t, {}), ["'observations'", "missing"]),
    ("hdf5-truncated", lambda t: pre("d4rl:", truncated(t, save_d4rl_hdf5, "cut.hdf5")),
     ["truncated"]),
    ("npz-truncated", lambda t: pre("npz:", truncated(t, save_npz, "cut.npz")),
     ["truncated"]),
    ("hdf5-is-directory", lambda t: pre("d4rl:", _dir(t, "d.hdf5")),
     ["is a directory", "D4RL hdf5"]),
    ("npz-is-directory", lambda t: pre("", _dir(t, "d.npz")), ["is a directory", "npz"]),
    ("minari-is-file", lambda t: ("minari:" + npz(t, arrays())[1], npz(t, arrays())[1]),
     ["is a file", "Minari"]),
    ("minari-missing-dir", lambda t: ("minari:" + os.path.join(t, "nope"),
                                      os.path.join(t, "nope")), ["no such Minari"]),
    ("minari-missing-key", lambda t: minari(t, lambda f: f["episode_1"].__delitem__("rewards")),
     ["episode_1", "'rewards'", "missing"]),
    ("minari-string-dtype", lambda t: minari(t, lambda f: _replace(
        f, "episode_0/actions", f["episode_0/actions"][()].astype("S8"))),
     ["'actions'", "dtype"]),
    ("minari-rewards-2d", lambda t: minari(t, lambda f: _replace(
        f, "episode_0/rewards", np.zeros((5, 2)))), ["episode_0", "'rewards'", "shape (T,)"]),
    ("minari-episode-obs-dim", lambda t: minari(t, lambda f: _replace(
        f, "episode_2/observations", np.zeros((5, 4)))),
     ["episode_2", "'observations'", "expected (3,)"]),
    ("minari-metadata-not-object", lambda t: minari(t, meta_text="[1]")[:1] + (
        os.path.join(t, "mds", "data", "metadata.json"),), ["metadata.json", "JSON object"]),
    ("minari-truncated", lambda t: minari(t, cut=True), ["truncated"]),
    ("unknown-prefix", lambda t: ("hdf:/data/hopper.hdf5", "hdf:/data/hopper.hdf5"),
     ["unknown format prefix 'hdf:'", "d4rl:PATH"]),
    ("no-format", lambda t: ("/data/hopper.csv", "/data/hopper.csv"), ["d4rl:PATH"]),
    ("embedded-unknown", lambda t: ("embedded:walker-nope", "embedded:walker-nope"),
     ["unknown embedded dataset", "hopper-medium-replay"]),
    ("embedded-empty-name", lambda t: ("embedded:", "embedded:"), ["embedded:NAME"]),
]


@pytest.mark.parametrize("name,make,expected", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_dataset_doors(tmp_path, name, make, expected):
  spec, named = make(str(tmp_path))
  before = sorted(os.listdir(tmp_path))
  with pytest.raises(ValueError) as e:
    load_dataset(spec)
  msg = str(e.value)
  assert named in msg, msg
  for text in expected:
    assert text in msg, (text, msg)
  assert sorted(os.listdir(tmp_path)) == before  # loaders write nothing


def test_env_dims_disagree(tmp_path):
  spec, p = npz(str(tmp_path), arrays())
  with pytest.raises(ValueError, match=r"bad\.npz: field 'observations' has dim 3.*obs_dim=11"):
    load_dataset(spec, EnvSpec(obs_dim=11, act_dim=2, max_action=1.0, env_id="Hopper-v5"))


def test_writers_leave_nothing_half_written(tmp_path):
  """A writer that fails (destination is a directory) leaves neither a file nor a temp file."""
  ds = episodes()
  for writer, name in ((save_npz, "out.npz"), (save_d4rl_hdf5, "out.hdf5")):
    target = tmp_path / name
    os.makedirs(target / "inside")
    with pytest.raises(OSError):
      writer(ds, target)
    assert os.listdir(tmp_path / name) == ["inside"]
  assert sorted(os.listdir(tmp_path)) == ["out.hdf5", "out.npz"]  # no .tmp left
  save_minari(ds, tmp_path / "m", env_id="Hopper-v5")
  with pytest.raises(FileExistsError, match="m already exists"):
    save_minari(ds, tmp_path / "m", env_id="Hopper-v5")


@pytest.mark.parametrize("text,expected", [
    (None, "not found"), ("{oops", "not valid JSON"), ('{"obs": null}', "'reward'"),
    ('{"obs": {"mean": [0, 0], "std": [1, -1]}, "reward": {"scale": 1, "shift": 0}}',
     "'std' must be positive"),
])
def test_normalization_file(tmp_path, text, expected):
  p = tmp_path / "normalization.json"
  if text is not None:
    p.write_text(text)
  with pytest.raises(ValueError) as e:
    load_stats(p)
  assert str(p) in str(e.value) and expected in str(e.value), str(e.value)


# ------------------------------------------------------------------------------------------
# Config fields: out-of-range hyperparameters of every agent and generator, presets, keys.

SPEC = EnvSpec(obs_dim=11, act_dim=3, max_action=1.0, env_id="Hopper-v5")

# (config, field under config.agent, bad value, expected substrings)
AGENT_CASES = [
    ("td3bc:tiny", "actor_lr", -3e-4, "config.agent.actor_lr must be a positive learning rate"),
    ("td3bc:tiny", "discount", 1.01, "config.agent.discount must be in [0, 1]"),
    ("td3bc:tiny", "policy_delay", 0, "config.agent.policy_delay must be >= 1"),
    ("iql:tiny", "expectile", 1.2, "config.agent.expectile must be in (0, 1)"),
    ("iql:tiny", "expectile", 0.0, "config.agent.expectile must be in (0, 1)"),
    ("iql:tiny", "value_lr", 0.0, "config.agent.value_lr must be a positive learning rate"),
    ("cql:tiny", "tau", 0.0, "config.agent.tau must be in (0, 1]"),
    ("cql:tiny", "hidden_dims", (), "config.agent.hidden_dims must be a non-empty list"),
    ("mcq:tiny", "discount", -0.1, "config.agent.discount must be in [0, 1]"),
    ("mcq:tiny", "lmbda", 2.0, "config.agent.lmbda must be in [0, 1]"),
    ("dtql:tiny", "lr", -1e-4, "config.agent.lr must be a positive learning rate"),
    ("dtql:tiny", "expectile", 1.0, "config.agent.expectile must be in (0, 1)"),
    ("dtql:tiny", "denoiser_hidden_dim", 0, "config.agent.denoiser_hidden_dim must be a positive"),
    ("sac:tiny", "discount", 1.5, "config.agent.discount must be in [0, 1]"),
    ("sac:tiny", "hidden_dims", (64, -1), "config.agent.hidden_dims must be a non-empty list"),
    ("redq:tiny", "critic_lr", -1.0, "config.agent.critic_lr must be a positive learning rate"),
    ("rlpd:tiny", "tau", 2.0, "config.agent.tau must be in (0, 1]"),
    ("td3bc:tiny", "nope", 1, "config.agent for 'td3bc' has unknown field(s) ['nope']"),
]


@pytest.mark.parametrize("config,field,value,expected", AGENT_CASES,
                         ids=[f"{c[0]}-{c[1]}={c[2]}" for c in AGENT_CASES])
def test_agent_hyperparameter_ranges(config, field, value, expected):
  c = load_config_file(config)
  agent = agents_lib.get_agent(c.get("agent_name", "sac"))
  with c.unlocked():
    c.agent[field] = value
  with pytest.raises(ValueError) as e:  # the agent's init, traced only (no compilation)
    jax.eval_shape(lambda k: agent.init(k, SPEC, c.agent), jax.random.key(0))
  assert expected in str(e.value), str(e.value)


def test_paper_values_pass_the_range_checks():
  """The shared range checks accept every preset's agent (a check that fails here would refuse
  a paper setting)."""
  from jaxaug.agents import common
  count = 0
  for name in ("td3bc", "iql", "cql", "mcq", "dtql", "sac", "redq", "rlpd", "atradiff"):
    module = load_config_module(name)
    for preset in module.PRESETS:
      agent = module.get_config(preset).get("agent")
      if agent is not None:
        common.check_ranges({k: common._freeze(v) for k, v in agent.items()}, name)
        count += 1
  assert count > 100


@pytest.mark.parametrize("config,field,value,expected", [
    ("gta:tiny", "learning_rate", -1e-3, "config.diffusion.learning_rate must be a positive"),
    ("synther:tiny", "ema_decay", 1.5, "config.diffusion.ema_decay must be in [0, 1]"),
    ("gta:tiny", "cond_dropout", -0.1, "config.diffusion.cond_dropout must be in [0, 1]"),
    ("synther:tiny", "lr_schedule", "linear", "config.lr_schedule: expected cosine"),
])
def test_generator_hyperparameter_ranges(config, field, value, expected):
  c = load_config_file(config)
  with c.unlocked():
    c.diffusion[field] = value
  with pytest.raises(ValueError) as e:  # what dtrain.init builds first
    dtrain.hyper_from_config(c.diffusion)
    dtrain.make_optimizer(c.diffusion)
  assert expected in str(e.value), str(e.value)


@pytest.mark.parametrize("field,value,expected", [
    ("num_steps", 150, "config.num_steps=150 must be a multiple of config.updates_per_dispatch"),
    ("batch_size", 0, "config.num_steps, config.batch_size and config.num_seeds must be"),
    ("checkpoint_every", 250, "config.checkpoint_every=250 must be a multiple"),
])
def test_loop_fields(field, value, expected):
  c = load_config_file("td3bc:tiny")
  c[field] = value
  with pytest.raises(ValueError) as e:
    LoopConfig.from_config(c).validate()
  assert expected in str(e.value), str(e.value)


def test_online_fields():
  from jaxaug.train import online
  c = load_config_file("sac:tiny")
  c.replay_capacity = 0
  with pytest.raises(ValueError, match=r"config.replay_capacity must be positive, got 0"):
    online.validate_online_config(c)


def test_build_dataset_sac_override_of_no_field(tmp_path):
  from jaxaug.data import builder
  opts = builder.BuildOptions(env_id="hopper", out=str(tmp_path / "out"),
                              sac_overrides=(("eval_episode", 5),))
  with pytest.raises(ValueError, match=r"--sac_set=eval_episode=...: the SAC config has no "
                     r"field 'eval_episode'"):
    builder.sac_config(opts)
  ok = builder.BuildOptions(env_id="hopper", out=str(tmp_path / "out"),
                            sac_overrides=(("agent.discount", 0.98),))
  assert builder.sac_config(ok).agent.discount == 0.98
  assert not os.path.exists(tmp_path / "out")


def test_unknown_agent_name():
  with pytest.raises(ValueError, match=r"unknown agent 'td3b' \(config.agent_name\); known"):
    agents_lib.get_agent("td3b")


@pytest.mark.parametrize("name", ["atradiff", "cql", "dtql", "gta", "iql", "mcq", "redq", "rlpd",
                                  "sac", "synther", "td3bc"])
def test_unknown_preset(name):
  with pytest.raises(ValueError) as e:
    load_config_file(f"{name}:no-such-preset")
  msg = str(e.value)
  assert "unknown preset 'no-such-preset'" in msg and f"configs/{name}.py" in msg, msg


def test_batch_not_divisible_by_devices():
  """Two CPU devices (a fresh process): a global batch that cannot be split is refused."""
  code = ("from jaxaug.train import mesh\n"
          "m = mesh.make_data_mesh()\n"
          "assert m.devices.size == 2, m.devices.size\n"
          "mesh.check_batch_divisible(256, m)\n"
          "mesh.check_batch_divisible(255, m)\n")
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode != 0
  assert "config.batch_size=255 must be divisible by the number of devices (2)" in proc.stderr, \
      proc.stderr[-2000:]


# ------------------------------------------------------------------------------------------
# Workdirs and checkpoints: another method's workdir, another config's checkpoint.


def _workdir_of(tmp_path, config_spec, name, checkpoint=True):
  c = load_config_file(config_spec)
  wd = str(tmp_path / name)
  config_io.save_config(c, wd)
  if checkpoint:
    os.makedirs(os.path.join(wd, "checkpoints", "100"))
  return wd


@pytest.mark.parametrize("made_by,used_with,expected", [
    ("gta:tiny", "td3bc:tiny", "holds a train_diffusion (gta) run"),
    ("td3bc:tiny", "synther:tiny", "holds a train_offline (td3bc) run"),
    ("td3bc:tiny", "iql:tiny", "holds a train_offline (td3bc) run"),
    ("td3bc:tiny", "sac:tiny", "holds a train_offline (td3bc) run"),
    ("synther:tiny", "gta:tiny", "holds a train_diffusion (synther) run"),
    ("sac:tiny", "redq:tiny", "holds a train_online (sac) run"),
])
def test_workdir_of_another_method(tmp_path, made_by, used_with, expected):
  wd = _workdir_of(tmp_path, made_by, "wd")
  saved = open(os.path.join(wd, "config.json")).read()
  with pytest.raises(ValueError) as e:
    config_io.save_config(load_config_file(used_with), wd)
  assert expected in str(e.value) and f"--workdir={wd}" in str(e.value), str(e.value)
  assert open(os.path.join(wd, "config.json")).read() == saved  # untouched


def test_workdir_of_another_config_and_allowed_changes(tmp_path):
  wd = _workdir_of(tmp_path, "td3bc:tiny", "wd")
  saved = open(os.path.join(wd, "config.json")).read()
  c = load_config_file("td3bc:tiny")
  c.agent.hidden_dims = (5, 5)
  c.seed = 3
  with pytest.raises(ValueError) as e:
    config_io.save_config(c, wd)
  msg = str(e.value)
  assert "another config" in msg and "agent.hidden_dims" in msg and "seed: 0 in the workdir, 3" \
      in msg, msg
  assert open(os.path.join(wd, "config.json")).read() == saved
  # Extending a run and changing periods or where the data lives is a resume, not another run.
  c = load_config_file("td3bc:tiny")
  c.num_steps *= 2
  c.eval_every = 500
  c.data_dir = "/elsewhere"
  config_io.save_config(c, wd)
  # Without checkpoints, a config.json of the same job is simply replaced (a fresh start).
  shutil.rmtree(os.path.join(wd, "checkpoints"))
  c.seed = 7
  config_io.save_config(c, wd)
  assert config_io.load_config(wd).seed == 7


def test_workdir_that_is_a_file(tmp_path):
  p = tmp_path / "f"
  p.write_text("x")
  with pytest.raises(ValueError, match=r"--workdir=.*/f is a file, expected a directory"):
    config_io.save_config(load_config_file("td3bc:tiny"), str(p))


def test_checkpoint_restore_names_differences(tmp_path):
  """A checkpoint restored into another structure, shape or dtype: the step directory and the
  arrays are named; a dtype change (orbax alone casts silently) is refused too."""
  import jax.numpy as jnp
  state = {"params": {"w": jnp.zeros((3, 4)), "b": jnp.zeros((4,))}, "rng": jax.random.key(1)}
  ckpt = Checkpointer(str(tmp_path / "checkpoints"))
  ckpt.save(100, state, {"x": 1})
  ckpt.close()
  ckpt = Checkpointer(str(tmp_path / "checkpoints"))
  step_dir = str(tmp_path / "checkpoints" / "100")
  cases = [
      ({"params": {"w": jnp.zeros((5, 4)), "b": jnp.zeros((4,))}, "rng": jax.random.key(1)},
       "'params.w' has shape (3, 4) in the checkpoint, this config builds (5, 4)"),
      ({"params": {"w": jnp.zeros((3, 4))}, "rng": jax.random.key(1)},
       "'params.b' is in the checkpoint but this config has no such array"),
      ({"params": {"w": jnp.zeros((3, 4)), "b": jnp.zeros((4,)), "c": jnp.zeros(())},
        "rng": jax.random.key(1)}, "'params.c' is missing from the checkpoint"),
      ({"params": {"w": jnp.zeros((3, 4), jnp.bfloat16), "b": jnp.zeros((4,))},
        "rng": jax.random.key(1)}, "'params.w' has dtype float32 in the checkpoint"),
  ]
  for target, expected in cases:
    with pytest.raises(ValueError) as e:
      ckpt.restore(100, target)
    assert step_dir in str(e.value) and expected in str(e.value), str(e.value)
  restored = ckpt.restore(100, state)  # the right target still restores
  np.testing.assert_array_equal(restored["params"]["w"], np.zeros((3, 4)))
  assert ckpt.all_steps() == [100]
  ckpt.close()


def _tiny_td3bc(hidden=(8, 8)):
  c = load_config_file("td3bc:tiny")
  c.num_steps = 100
  c.updates_per_dispatch = 100
  c.log_every = 100
  c.checkpoint_every = 100
  c.eval_episodes = 0
  c.batch_size = 16
  c.agent.hidden_dims = hidden
  return c


def test_trained_workdir_with_another_config(tmp_path):
  """A real td3bc workdir: an iql config, other network sizes (through train_offline and through
  the loop's restore) fail naming what differs; the workdir's files are untouched."""
  from jaxaug.train import offline
  from jaxaug.train.loop import run_training
  wd = str(tmp_path / "td3bc")
  offline.train_offline(_tiny_td3bc(), wd)
  snapshot = {n: open(os.path.join(wd, n), "rb").read()
              for n in ("config.json", "metrics.jsonl", "summary.json", "normalization.json")}

  iql = load_config_file("iql:tiny")
  iql.num_steps, iql.eval_episodes, iql.updates_per_dispatch = 100, 0, 100
  with pytest.raises(ValueError, match=r"holds a train_offline \(td3bc\) run"):
    offline.train_offline(iql, wd)
  with pytest.raises(ValueError, match=r"agent.hidden_dims: \[8, 8\] in the workdir, \[16, 16\]"):
    offline.train_offline(_tiny_td3bc((16, 16)), wd)

  # Library use of the loop (no config.json check): the checkpoint restore names the arrays.
  agent = agents_lib.get_agent("td3bc")
  c = _tiny_td3bc((16, 16))
  data = load_dataset(c.dataset).transitions()
  from jaxaug.data import dataset as dataset_lib
  with pytest.raises(ValueError) as e:
    run_training(cfg=LoopConfig.from_config(c), workdir=wd,
                 init_fn=lambda k: agent.init(k, SPEC, c.agent), update_fn=agent.update,
                 sample_fn=dataset_lib.sample_transitions, data=data)
  msg = str(e.value)
  assert os.path.join(wd, "checkpoints", "100") in msg and "checkpoint does not fit" in msg, msg
  assert "in the checkpoint, this config builds" in msg, msg
  for n, content in snapshot.items():
    assert open(os.path.join(wd, n), "rb").read() == content, n
  assert sorted(os.listdir(os.path.join(wd, "checkpoints"))) == ["100"]


def test_online_nan_loss_keeps_last_good_checkpoint(tmp_path):
  """train_online: a NaN loss stops the run at the next checkpoint, naming the env step and the
  loss; the checkpoint before it is the last one on disk and restores."""
  import types
  import jax.numpy as jnp
  from jaxaug.agents import sac
  from jaxaug.train import online

  def update(state, batch, key):  # SAC whose critic loss turns NaN from its 60th update on
    state, metrics = sac.update(state, batch, key)
    return state, dict(metrics, critic_loss=jnp.where(state.step >= 60, jnp.nan,
                                                      metrics["critic_loss"]))

  agent = types.SimpleNamespace(**{k: getattr(sac, k) for k in dir(sac) if not k.startswith("__")})
  agent.update = update
  c = load_config_file("sac:tiny")
  # Checkpoints at 100 (good) and 200 (NaN); the run never reaches its end, so no evaluation.
  c.num_env_steps, c.start_steps, c.checkpoint_every, c.log_every = 300, 50, 100, 100
  c.eval_every, c.eval_episodes, c.replay_capacity, c.utd_ratio = 0, 1, 500, 1
  wd = str(tmp_path / "online")
  with pytest.raises(FloatingPointError, match=r"non-finite training metrics in env step 200: "
                     r"train/critic_loss=nan; nothing was saved after step 100"):
    online.train_online(c, wd, agent=agent)
  ckpt = Checkpointer(os.path.join(wd, "checkpoints"))
  assert ckpt.latest_step() == 100
  assert ckpt.restore_meta(100)["step"] == 100
  ckpt.close()
  assert not os.path.exists(os.path.join(wd, "summary.json"))


# ------------------------------------------------------------------------------------------
# CLI flags of the mains (subprocesses, started together to share the import time).


def _cli_cases(tmp):
  gta_wd = os.path.join(tmp, "gta_wd")
  config_io.save_config(load_config_file("gta:tiny"), gta_wd)
  td3bc_wd = os.path.join(tmp, "td3bc_wd")
  config_io.save_config(load_config_file("td3bc:tiny"), td3bc_wd)
  off, dif, onl, aug = (os.path.join("experiments", f"{m}.py") for m in
                        ("train_offline", "train_diffusion", "train_online", "augment"))
  w = os.path.join(tmp, "w")
  return gta_wd, td3bc_wd, [
      ("missing-workdir", [off, "--config=configs/td3bc.py:tiny"],
       ["--workdir", "must have a value"]),
      ("missing-config-file", [off, "--config=configs/no_such.py:tiny", f"--workdir={w}"],
       ["--config=configs/no_such.py:tiny", "cannot load the config file", "No such file"]),
      ("unknown-preset", [dif, "--config=configs/gta.py:nope", f"--workdir={w}"],
       ["--config=configs/gta.py:nope", "unknown preset 'nope'"]),
      ("unknown-key", [off, "--config=configs/td3bc.py:tiny", "--config.batchsize=8",
                       f"--workdir={w}"], ["--config.batchsize=8", "no field 'batchsize'"]),
      ("unknown-agent-key", [onl, "--config=configs/sac.py:tiny", "--config.agent.lrr=1",
                             f"--workdir={w}"], ["--config.agent.lrr=1", "no field 'lrr'"]),
      ("offline-into-diffusion-workdir", [off, "--config=configs/td3bc.py:tiny",
                                         f"--workdir={gta_wd}"],
       [f"--workdir={gta_wd}", "holds a train_diffusion (gta) run", "td3bc"]),
      ("diffusion-into-offline-workdir", [dif, "--config=configs/synther.py:tiny",
                                          f"--workdir={td3bc_wd}"],
       ["holds a train_offline (td3bc) run", "train_diffusion (synther)"]),
      ("augment-out-is-directory", [aug, "--config=configs/gta.py:tiny", f"--workdir={gta_wd}",
                                    f"--out={gta_wd}"], [f"--out={gta_wd} is a directory"]),
      ("augment-negative-s4rl-std", [aug, "--config=configs/gta.py:tiny", "--s4rl",
                                     "--s4rl_std=-0.1", f"--out={tmp}/s4rl.npz"],
       ["--s4rl_std must be >= 0"]),
      ("quality-negative-rows", [os.path.join("experiments", "quality.py"),
                                 "--original=embedded:hopper-medium-replay", "--max_rows=-1",
                                 f"--out={tmp}/q"], ["--max_rows must be >= 0"]),
      ("augment-from-offline-workdir", [aug, "--config=configs/gta.py:tiny",
                                        f"--workdir={td3bc_wd}", f"--out={tmp}/gen.npz"],
       ["holds a train_offline (td3bc) run"]),
  ]


def test_cli_flags(tmp_path):
  gta_wd, td3bc_wd, cases = _cli_cases(str(tmp_path))
  before = {d: sorted(os.listdir(d)) for d in (gta_wd, td3bc_wd)}
  configs_before = {d: open(os.path.join(d, "config.json")).read() for d in (gta_wd, td3bc_wd)}
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  procs = [(name, expected, subprocess.Popen([sys.executable] + argv, cwd=ROOT, env=env,
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                             text=True))
           for name, argv, expected in cases]
  failures = []
  for name, expected, proc in procs:
    out, _ = proc.communicate(timeout=600)
    tail = out[-3000:]
    if proc.returncode == 0 or "Traceback" in out or any(t not in out for t in expected):
      failures.append(f"{name}: rc={proc.returncode}\n{tail}")
  assert not failures, "\n\n".join(failures)
  assert not os.path.exists(tmp_path / "w")  # nothing started
  for name in ("gen.npz", "s4rl.npz", "q"):
    assert not os.path.exists(tmp_path / name), name
  for d in (gta_wd, td3bc_wd):
    assert sorted(os.listdir(d)) == before[d]
    assert open(os.path.join(d, "config.json")).read() == configs_before[d]
