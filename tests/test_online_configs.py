"""Every preset of the online config files loads and passes the online loop's validation; the
ATraDiff ones also give a valid diffuser spec. Unknown presets are errors naming the file."""

import importlib.util
import os

import pytest

from jaxaug.augment.atradiff.diffuser import spec_from_config
from jaxaug.configs_io import load_config_file
from jaxaug.train.online import validate_online_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _presets(name):
  spec = importlib.util.spec_from_file_location(f"_cfg_{name}",
                                                os.path.join(ROOT, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.PRESETS


@pytest.mark.parametrize("name", ["sac", "redq", "rlpd", "atradiff"])
def test_every_online_preset_is_valid(name):
  presets = _presets(name)
  assert presets
  for preset in presets:
    c = load_config_file(f"{name}:{preset}")
    validate_online_config(c)
    if name == "atradiff":
      spec = spec_from_config(c.atradiff, 11, 3)
      assert spec.max_length == max(c.atradiff.lengths)
  with pytest.raises(ValueError, match=rf"configs/{name}.py: unknown preset"):
    load_config_file(f"{name}:no-such-preset")


def _dataset_specs(config):
  """Every dataset spec string anywhere in a config (top level and nested)."""
  out = []
  for key, value in config.items():
    if hasattr(value, "items"):
      out += _dataset_specs(value)
    elif isinstance(value, str) and key.endswith("dataset") and value:
      out.append((key, value))
  return out


@pytest.mark.parametrize("name", ["sac", "redq", "rlpd"])
def test_online_presets_name_only_datasets_that_exist_or_d4rl_files(name):
  """embedded: specs must name a file shipped in jaxaug/embedded/; everything else is a
  d4rl: file under the config's data_dir (so `--config.data_dir` moves it)."""
  embedded = {f[:-4] for f in os.listdir(os.path.join(ROOT, "jaxaug", "embedded"))
              if f.endswith(".npz")}
  for preset in _presets(name):
    c = load_config_file(f"{name}:{preset}")
    for key, spec in _dataset_specs(c):
      kind, _, rest = spec.partition(":")
      if kind == "embedded":
        assert rest in embedded, f"{name}:{preset} {key}={spec!r}"
      else:
        assert kind == "d4rl" and rest.startswith(c.data_dir + "/"), f"{name}:{preset} {spec}"
        assert rest.endswith("-v2.hdf5")


def test_cpu_scale_atradiff_presets_share_one_diffuser_config():
  """cpu-hopper (SAC) and cpu-redq-hopper (REDQ) must be able to share a trained diffuser."""
  sac = load_config_file("atradiff:cpu-hopper")
  redq = load_config_file("atradiff:cpu-redq-hopper")
  assert sac.atradiff.to_dict() == redq.atradiff.to_dict()
  assert (sac.agent_name, redq.agent_name) == ("sac", "redq")
  assert (redq.agent.num_critics, redq.agent.num_min_critics, redq.utd_ratio) == (10, 2, 20)
