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


def test_cpu_scale_atradiff_presets_share_one_diffuser_config():
  """cpu-hopper (SAC) and cpu-redq-hopper (REDQ) must be able to share a trained diffuser."""
  sac = load_config_file("atradiff:cpu-hopper")
  redq = load_config_file("atradiff:cpu-redq-hopper")
  assert sac.atradiff.to_dict() == redq.atradiff.to_dict()
  assert (sac.agent_name, redq.agent_name) == ("sac", "redq")
  assert (redq.agent.num_critics, redq.agent.num_min_critics, redq.utd_ratio) == (10, 2, 20)
