"""The preset matrix: every preset of every config file in configs/ builds, validates, resolves
its datasets and runs.

One test per (config file, preset), parametrised so that pytest-xdist spreads them
(`pytest -n 2 tests/test_preset_matrix.py`). A config file without a module-level PRESETS is a
failing test of its own. What every preset gets:

  1. build: `get_config(preset)` of the file, loaded as the experiments load it;
  2. datasets: every dataset spec string in the config (`dataset`, `offline_dataset`,
     `atradiff.offline_dataset`, `augment.path`, any other string field starting with
     d4rl:/minari:/npz:/embedded:) is resolved. D4RL and Minari specs are served by stand-in
     files written into a tmp dir (tests/helpers/preset_fixtures.py) under the names the real
     files have; a config with a `data_dir` field gets `data_dir = <tmp dir>` and its specs must
     then point inside it (that is what `--config.data_dir=/data/d4rl` relies on); without one,
     the spec's directory is replaced by the tmp dir. A file name the real suite does not publish
     (wrong `-v<k>`, unknown dataset) fails, so does an `embedded:` name the package lacks and
     an `npz:` spec (no preset may depend on a locally generated file). Every dataset is loaded
     and validated (jaxaug.data.loaders), against the environment's dimensions where jaxaug has
     that environment (jaxaug.envs);
  3. validation: what the entry point checks first: `LoopConfig.validate` (offline agents, DTQL,
     GTA/SynthER generators), `validate_online_config` (+ the ATraDiff diffuser spec);
  4. init at full size: `jax.eval_shape` of the agent's (or generator's) init with the preset's
     real network sizes and the dataset's dimensions (traces the real networks; no compute);
  5. a shrunken copy (`shrink`: network widths 16 (depth kept; MixerUnet dim 8), a few steps,
     batch 16, evaluation off offline and one episode online, checkpoint only at the end,
     everything else as the preset has it) that still validates.

and then, for ONE preset per distinct structure (the "runner"), the shrunken copy runs through
the entry point the experiments use, in a fresh workdir:

  * offline agents and DTQL: `jaxaug.train.offline.train_offline` (4 updates, 2 per dispatch;
    DTQL: 2 pre-training + 2 main updates); presets whose environment jaxaug lacks (AntMaze,
    Adroit pen, Kitchen, Maze2D) run with evaluation off and the EnvSpec taken from the data;
  * GTA / SynthER: `jaxaug.augment.pipeline.train_generator` (4 updates) and then
    `pipeline.generate` (2 sampler steps, 64 transitions), as experiments/train_diffusion.py and
    experiments/augment.py do;
  * SAC / REDQ / RLPD / ATraDiff: `jaxaug.train.online.train_online` (16 env steps, updates
    from step min(start_steps, 8), one evaluation episode at the end; ATraDiff trains every
    generator of the preset for 2 steps first).

The structure of a preset is its shrunken config with dataset paths, data_dir, env_id and seed
left out and every number replaced by its sign (-, 0, +; bools, strings, None and tuple lengths
are kept), so presets that differ only in numeric hyperparameters (learning rates, weights,
epochs, bins), dataset or environment share one compiled run: every switch combination of every
config file still runs. The first preset of each
structure, in config-file then PRESETS order, is its runner; the test id says `run` or
`check`. Results: metrics finite, the requested number of steps / transitions done.
"""

from __future__ import annotations

import glob
import json
import math
import os
import types

import jax
import ml_collections
import numpy as np
import pytest

from jaxaug.configs_io import load_config_module
from jaxaug.train import config_io
from jaxaug.types import EnvSpec
from tests.helpers import preset_fixtures as fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))
DATASET_PREFIXES = ("d4rl:", "minari:", "npz:", "embedded:")
GENERATORS = ("gta", "synther")
K = 2  # updates per dispatch in shrunken runs
NET_WIDTH = 16
ONLINE_ENV_STEPS = 16


# ------------------------------------------------------------------------------------------
# Kinds, shrinking, structure.


def kind_of(c: ml_collections.ConfigDict) -> str:
  if c.get("method") in GENERATORS:
    return "generator"
  if "num_env_steps" in c:
    return "online"
  return "offline"


def _shrink_networks(node: ml_collections.ConfigDict, path: str = "") -> None:
  for key in list(node.keys()):
    value = node[key]
    if isinstance(value, ml_collections.ConfigDict):
      _shrink_networks(value, f"{path}{key}.")
      continue
    if isinstance(value, bool):
      continue
    if key.endswith("hidden_dims") and isinstance(value, (tuple, list)) and value:
      node[key] = tuple(min(int(v), NET_WIDTH) for v in value)
    elif key in ("hidden_dim", "denoiser_hidden_dim", "width", "denoiser_width", "dim_t",
                 "denoiser_dim_t") and isinstance(value, int):
      node[key] = min(value, NET_WIDTH)
    elif key in ("num_blocks", "denoiser_blocks") and isinstance(value, int):
      node[key] = min(value, 1)
    elif key == "dim" and path.endswith("net_kwargs.") and isinstance(value, int):
      node[key] = min(value, 8)  # MixerUnet base channels (levels kept)


def _set_if(c: ml_collections.ConfigDict, key: str, value) -> None:
  if key in c:
    c[key] = value


def shrink(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Network sizes and step counts reduced in place (see the module doc); returns c."""
  kind = kind_of(c)
  _shrink_networks(c)
  if kind in ("offline", "generator"):
    c.updates_per_dispatch = K
    c.num_steps = 2 * K  # (a FieldReference in generator configs: diffusion.num_steps follows)
    c.batch_size = 16
    c.log_every = K
    c.eval_every = 0
    c.checkpoint_every = 0
    _set_if(c, "eval_episodes", 0)
    agent = c.get("agent")
    if agent is not None and int(agent.get("pretrain_steps", 0) or 0) > 0:
      agent.pretrain_steps = K  # DTQL: both phases run
    if kind == "generator":
      c.sampler.num_steps = 2
      c.num_transitions = 64
      _set_if(c, "windows_per_chunk", 4)
      _set_if(c, "samples_per_chunk", 32)
  else:
    c.num_env_steps = ONLINE_ENV_STEPS
    c.start_steps = min(int(c.start_steps), ONLINE_ENV_STEPS // 2)
    c.batch_size = 16
    c.replay_capacity = 64
    c.eval_every = 0
    c.eval_episodes = 1
    c.checkpoint_every = 0
    c.log_every = ONLINE_ENV_STEPS
    a = c.get("atradiff")
    if a is not None:
      for key, value in (("generator_steps", 2), ("steps_per_dispatch", 2),
                         ("generator_batch_size", 16), ("estimator_steps", 2),
                         ("preliminary_samples", 8), ("num_sample_steps", 2),
                         ("synthetic_capacity", 256), ("bucket_size", 8),
                         ("generation_interval", 4), ("adapt_start", 8), ("adapt_every", 8),
                         ("adapt_steps", 2), ("adapt_batch_size", 16), ("td_heap_size", 64),
                         ("td_top_k", 16), ("reward_buffer_size", 64)):
        _set_if(a, key, value)
  return c


_IDENTITY_FIELDS = ("env_id", "data_dir", "seed")


def _structure(value, key: str = ""):
  if isinstance(value, dict):
    return {k: _structure(v, k) for k, v in sorted(value.items()) if k not in _IDENTITY_FIELDS}
  if isinstance(value, (tuple, list)):
    return [_structure(v) for v in value]
  if isinstance(value, str) and value.startswith(DATASET_PREFIXES):
    return "<dataset>"
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    kind = "float" if isinstance(value, float) else "int"
    return f"{kind}:" + ("nan" if math.isnan(value) else "-" if value < 0 else
                         "0" if value == 0 else "+")
  return value


def _dataset_specs(c: ml_collections.ConfigDict, path: str = "") -> dict[str, str]:
  out = {}
  for key in c.keys():
    value = c[key]
    if isinstance(value, ml_collections.ConfigDict):
      out.update(_dataset_specs(value, f"{path}{key}."))
    elif isinstance(value, str) and value.startswith(DATASET_PREFIXES):
      out[f"{path}{key}"] = value
  return out


def _env_name_of(c: ml_collections.ConfigDict) -> str:
  """What the offline entry point infers the environment from: env_id, else the dataset name."""
  if c.get("env_id"):
    return c.env_id
  spec = c.get("dataset", "")
  return os.path.splitext(os.path.basename(spec.split(":", 1)[-1]))[0]


def env_known(c: ml_collections.ConfigDict) -> bool:
  from jaxaug import envs
  try:
    envs.resolve_env_id(_env_name_of(c))
    return True
  except ValueError:
    return False


def build(name: str, preset: str) -> ml_collections.ConfigDict:
  module = load_config_module(os.path.join(ROOT, "configs", f"{name}.py"))
  return module.get_config(preset)


def structure_key(name: str, preset: str) -> str:
  c = build(name, preset)
  kind = kind_of(c)
  known = env_known(c) if kind == "offline" else True
  c = shrink(c)
  return json.dumps([name, kind, known, _structure(c.to_dict())], sort_keys=True, default=str)


# ------------------------------------------------------------------------------------------
# The matrix (computed at collection; cheap: configs only).


def _cases():
  cases, seen = [], set()
  for path in CONFIG_FILES:
    name = os.path.splitext(os.path.basename(path))[0]
    try:
      presets = getattr(load_config_module(path), "PRESETS", None)
    except Exception:  # reported by the test of this file
      presets = None
    if not presets:
      cases.append(pytest.param(name, None, False, id=f"{name}:<no PRESETS>"))
      continue
    for preset in presets:
      try:
        key = structure_key(name, preset)
      except Exception:  # the test reports the error; run it fully
        key = f"{name}:{preset}:error"
      runner = key not in seen
      seen.add(key)
      cases.append(pytest.param(name, preset, runner,
                                marks=[pytest.mark.heavy] if runner else [],
                                id=f"{name}:{preset}:{'run' if runner else 'check'}"))
  return cases


CASES = _cases()


# ------------------------------------------------------------------------------------------
# Dataset resolution against the stand-in files.


def resolve_datasets(c: ml_collections.ConfigDict, data_dir: str) -> dict[str, str]:
  """Points c's dataset specs at stand-in files in data_dir (written here); returns them."""
  if "data_dir" in c:
    c.data_dir = data_dir
  specs = _dataset_specs(c)
  for field, spec in specs.items():
    fmt, _, path = spec.partition(":")
    where = f"config.{field}={spec!r}"
    if fmt == "npz":
      raise AssertionError(f"{where}: presets must not depend on a locally generated npz file")
    if fmt == "embedded":
      from jaxaug.data import loaders
      assert path in loaders.available_embedded(), (
          f"{where}: no embedded dataset {path!r} (available: {loaders.available_embedded()}); "
          "per-dataset presets should read d4rl:<data_dir>/<name>-v2.hdf5")
      continue
    if "data_dir" in c:
      assert os.path.dirname(os.path.abspath(path)) == os.path.abspath(data_dir) or \
          os.path.abspath(path).startswith(os.path.abspath(data_dir) + os.sep), (
              f"{where}: does not follow config.data_dir (set to {data_dir!r}); "
              "`--config.data_dir=...` would not move it")
      new_path = path
    elif fmt == "d4rl":
      new_path = os.path.join(data_dir, os.path.basename(path))
    else:  # minari: keep <namespace>/<env>/<name>-v<k>
      parts = os.path.normpath(path).split(os.sep)
      parts = parts[:-1] if parts[-1] == "data" else parts
      new_path = os.path.join(data_dir, *parts[-3:])
    try:
      if not os.path.exists(new_path):
        (fixtures.write_d4rl if fmt == "d4rl" else fixtures.write_minari)(new_path)
    except ValueError as e:
      raise AssertionError(f"{where}: {e}") from None
    if new_path != path:
      _set_dotted(c, field, f"{fmt}:{new_path}")
  return _dataset_specs(c)


def _set_dotted(c, field, value):
  *parents, leaf = field.split(".")
  for p in parents:
    c = c[p]
  c[leaf] = value


def load_all(specs: dict[str, str], spec_for: dict[str, EnvSpec | None]):
  from jaxaug.data import loaders
  out = {}
  for field, spec in specs.items():
    out[field] = loaders.load_dataset(spec, env_spec=spec_for.get(field))
  return out


def _env_spec_or_none(name: str) -> EnvSpec | None:
  from jaxaug import envs
  try:
    return envs.env_spec(name)
  except ValueError:
    return None


def _finite(d: dict) -> bool:
  vals = [v for v in d.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
  return all(math.isfinite(v) for v in vals)


# ------------------------------------------------------------------------------------------
# The test.


@pytest.mark.parametrize("name, preset, runner", CASES)
def test_preset(name, preset, runner, tmp_path, monkeypatch):
  assert preset is not None, (f"configs/{name}.py has no module-level PRESETS tuple; list its "
                              "presets there so that they can be enumerated and tested")
  data_dir = str(tmp_path / "data")
  os.makedirs(data_dir)
  c = build(name, preset)
  assert isinstance(c, ml_collections.ConfigDict)
  kind = kind_of(c)
  specs = resolve_datasets(c, data_dir)
  if kind == "generator":
    assert "dataset" in specs, f"configs/{name}.py:{preset}: generator config without a dataset"
  if kind == "offline":
    assert "dataset" in specs, f"configs/{name}.py:{preset}: offline config without a dataset"

  {"offline": _check_offline, "generator": _check_generator, "online": _check_online}[kind](
      name, preset, c, specs, runner, tmp_path, monkeypatch)


def _check_offline(name, preset, c, specs, runner, tmp_path, monkeypatch):
  from jaxaug import agents as agents_lib
  from jaxaug.train import offline
  from jaxaug.train.loop import LoopConfig

  known = env_known(c)
  env_spec = _env_spec_or_none(_env_name_of(c)) if known else None
  datasets = load_all(specs, {"dataset": env_spec, "augment.path": env_spec})
  ds = datasets["dataset"]
  if env_spec is None:
    env_spec = EnvSpec(obs_dim=ds.obs_dim, act_dim=ds.act_dim, max_action=1.0,
                       env_id=_env_name_of(c))
  else:
    assert offline.infer_env_id(c, ds) == env_spec.env_id
  LoopConfig.from_config(c).validate()
  agent = agents_lib.get_agent(c.agent_name)
  shapes = jax.eval_shape(lambda k: agent.init(k, env_spec, c.agent), jax.random.key(0))
  assert jax.tree.leaves(shapes)

  small = shrink(c)
  LoopConfig.from_config(small).validate()
  if not runner:
    return
  small.lock()
  if not known:  # no environment in jaxaug: evaluation is off; the spec comes from the data
    monkeypatch.setattr(offline, "infer_env_id", lambda config, d: env_spec.env_id)
    monkeypatch.setattr(offline, "envs", types.SimpleNamespace(env_spec=lambda _: env_spec))
  summary = offline.train_offline(small, str(tmp_path / "work"))
  assert summary["num_steps"] == small.num_steps
  metrics = {k: v for k, v in summary.items() if k not in ("state", "env_id", "dataset", "agent")}
  assert len(metrics) > 2, summary.keys()
  assert _finite(metrics), metrics
  assert os.path.exists(tmp_path / "work" / "summary.json")


def _check_generator(name, preset, c, specs, runner, tmp_path, monkeypatch):
  from jaxaug.augment import pipeline
  from jaxaug.train.loop import LoopConfig

  datasets = load_all(specs, {})
  ds = datasets["dataset"]
  env_spec = _env_spec_or_none(_env_name_of(c))
  if env_spec is not None:
    assert (ds.obs_dim, ds.act_dim) == (env_spec.obs_dim, env_spec.act_dim)
  LoopConfig.from_config(c).validate()
  _, data = pipeline.prepare_data(c, ds)
  shapes = jax.eval_shape(pipeline._init_fn(c, data), jax.random.key(0))
  assert jax.tree.leaves(shapes)

  small = shrink(c)
  LoopConfig.from_config(small).validate()
  if not runner:
    return
  small.lock()
  work = str(tmp_path / "work")
  _, last = pipeline.train_generator(small, work, dataset=ds)
  assert last and _finite({k: float(v) for k, v in last.items()}), last
  gen = pipeline.generate(small, work, str(tmp_path / "gen.npz"), dataset=ds, log=lambda *a: None)
  assert len(gen) == small.num_transitions
  for field in ("observations", "actions", "rewards", "next_observations"):
    assert np.isfinite(getattr(gen, field)).all(), field
  assert gen.obs_dim == ds.obs_dim and gen.act_dim == ds.act_dim


def _check_online(name, preset, c, specs, runner, tmp_path, monkeypatch):
  from jaxaug import agents as agents_lib
  from jaxaug import envs
  from jaxaug.train import online

  env_id = envs.resolve_env_id(c.env_id)
  env_spec = envs.env_spec(env_id)
  load_all(specs, {k: env_spec for k in specs})  # offline data must fit the environment
  online.validate_online_config(c)
  if "atradiff" in c:
    from jaxaug.augment.atradiff.diffuser import spec_from_config
    spec = spec_from_config(c.atradiff, env_spec.obs_dim, env_spec.act_dim)
    assert spec.max_length == max(c.atradiff.lengths)
  env = envs.make_env(env_id)
  try:
    assert env.observation_space.shape == (env_spec.obs_dim,)
    assert env.action_space.shape == (env_spec.act_dim,)
  finally:
    env.close()
  agent = agents_lib.get_agent(c.get("agent_name", "sac") or "sac")
  shapes = jax.eval_shape(lambda k: agent.init(k, env_spec, c.agent), jax.random.key(0))
  assert jax.tree.leaves(shapes)

  small = shrink(c)
  online.validate_online_config(small)
  if not runner:
    return
  small.lock()
  summary = online.train_online(small, str(tmp_path / "work"))
  assert summary["steps"] == small.num_env_steps
  assert summary["last_eval"] and _finite(summary["last_eval"]), summary
  if "extras" in summary:
    assert _finite({k: v for k, v in summary["extras"].items()
                    if isinstance(v, (int, float))}), summary["extras"]


# ------------------------------------------------------------------------------------------
# The matrix's own machinery: checks that can fail.


def _flat(d, prefix=""):
  return config_io._flatten(d, prefix)  # noqa: SLF001 (the same flattening the resume check uses)


_SHRUNK_FIELDS = {
    "updates_per_dispatch", "num_steps", "batch_size", "log_every", "eval_every",
    "checkpoint_every", "eval_episodes", "num_env_steps", "start_steps", "replay_capacity",
    "num_transitions", "windows_per_chunk", "samples_per_chunk", "sampler.num_steps",
    "diffusion.num_steps", "agent.pretrain_steps",
}


@pytest.mark.parametrize("spec", ["td3bc:hopper-medium", "gta:paper", "atradiff:rlpd-hopper",
                                  "sac:hopper"])
def test_shrink_changes_only_sizes_and_step_counts(spec):
  name, preset = spec.split(":")
  full = _flat(build(name, preset).to_dict())
  small = _flat(shrink(build(name, preset)).to_dict())
  assert full.keys() == small.keys()
  changed = {k for k in full if full[k] != small[k]}
  size_like = {k for k in changed if k.rsplit(".", 1)[-1] in (
      "hidden_dims", "hidden_dim", "width", "dim_t", "num_blocks", "dim", "denoiser_width",
      "denoiser_dim_t", "denoiser_blocks", "denoiser_hidden_dim", "estimator_hidden_dims")}
  step_like = {k for k in changed if k in _SHRUNK_FIELDS or k.startswith("atradiff.")}
  assert changed - size_like - step_like == set(), changed - size_like - step_like
  assert changed, "shrink changed nothing"


def test_resolve_rejects_datasets_the_real_suites_do_not_have(tmp_path):
  c = ml_collections.ConfigDict({"dataset": "embedded:walker2d-medium-replay"})
  with pytest.raises(AssertionError, match="no embedded dataset 'walker2d-medium-replay'"):
    resolve_datasets(c, str(tmp_path))
  c = ml_collections.ConfigDict({"dataset": "d4rl:/somewhere/pen-human-v2.hdf5"})
  with pytest.raises(AssertionError, match="publishes this dataset as 'pen-human-v1.hdf5'"):
    resolve_datasets(c, str(tmp_path))
  c = ml_collections.ConfigDict({"dataset": "npz:/tmp/generated.npz"})
  with pytest.raises(AssertionError, match="locally generated npz"):
    resolve_datasets(c, str(tmp_path))


def test_resolve_requires_specs_to_follow_data_dir(tmp_path):
  c = ml_collections.ConfigDict({"data_dir": "/data/d4rl"})
  c.dataset = "d4rl:" + c.get_ref("data_dir") + "/hopper-medium-v2.hdf5"
  specs = resolve_datasets(c, str(tmp_path))
  assert specs == {"dataset": f"d4rl:{tmp_path}/hopper-medium-v2.hdf5"}
  assert os.path.isfile(tmp_path / "hopper-medium-v2.hdf5")
  fixed = ml_collections.ConfigDict({"data_dir": "/data/d4rl",
                                     "dataset": "d4rl:/data/d4rl/hopper-medium-v2.hdf5"})
  with pytest.raises(AssertionError, match="does not follow config.data_dir"):
    resolve_datasets(fixed, str(tmp_path / "other"))
  # Without data_dir the file name is kept and the directory replaced; Minari keeps its id path.
  c = ml_collections.ConfigDict({"dataset": "d4rl:data/halfcheetah-medium-replay-v2.hdf5",
                                 "offline_dataset": "minari:~/.minari/mujoco/ant/medium-v0"})
  specs = resolve_datasets(c, str(tmp_path))
  assert specs["dataset"] == f"d4rl:{tmp_path}/halfcheetah-medium-replay-v2.hdf5"
  assert specs["offline_dataset"] == f"minari:{tmp_path}/mujoco/ant/medium-v0"
  ds = load_all(specs, {})
  assert (ds["offline_dataset"].obs_dim, ds["offline_dataset"].act_dim) == (27, 8)


@pytest.mark.parametrize("env", ["hopper", "halfcheetah", "walker2d", "ant"])
def test_stand_in_dimensions_match_jaxaug_environments(env, tmp_path):
  from jaxaug import envs
  from jaxaug.data import loaders
  path = fixtures.write_d4rl(str(tmp_path / fixtures.d4rl_filename(f"{env}-medium")))
  ds = loaders.load_dataset(f"d4rl:{path}", env_spec=envs.env_spec(env))
  assert ds.metadata.get("next_observations_rebuilt") is None  # v2 files store them
  suite = fixtures.SUITES[env]
  assert (ds.obs_dim, ds.act_dim) == (suite.obs_dim, suite.act_dim)
