"""experiments/gen_method_docs.py: the hyperparameter tables of docs/methods/*.md are rendered
from the config files, a missing field is an error naming page, block and field, `--check`
reports stale pages, and the repository's pages are up to date."""

import glob
import os
import subprocess
import sys

import pytest

from experiments import gen_method_docs as gen

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SAMPLE_CONFIG = '''
import ml_collections

PRESETS = ("small", "big")


def get_config(arg="big"):
  c = ml_collections.ConfigDict()
  steps = ml_collections.FieldReference(1_000_000 if arg == "big" else 2000)
  c.num_steps = steps
  c.agent = ml_collections.ConfigDict()
  c.agent.lr = 3e-4 if arg == "big" else 0.001
  c.agent.decay_steps = steps  # a FieldReference: rendered as its value
  c.agent.hidden_dims = (256, 256) if arg == "big" else (32,)
  c.agent.layer_norm = arg == "big"
  c.agent.tau = 0.005
  c.agent.weight = 5.0
  c.agent.eps = 1e-5
  c.dataset = "d4rl:/data/hopper-medium-v2.hdf5"
  c.env_id = ""
  return c
'''

SAMPLE_PAGE = """# Sample

<!-- hparams config=cfg/sample.py preset=big -->
| Paper hyperparameter | Paper value | Config field | jaxaug default |
|---|---|---|---|
| Learning rate | 3e-4 | `agent.lr` | |
| Steps | 1M | `num_steps` | stale text |
| Decay | = steps | `agent.decay_steps` |
| Hidden | 2x256 | `agent.hidden_dims` | |
| LayerNorm | yes | `agent.layer_norm` | |
| Tau | 0.005 | `agent.tau` | |
| Weight | 5 | `agent.weight` | |
| Epsilon | 1e-5 | `agent.eps` | |
| Data | - | `dataset` | |
| Env | - | `env_id` | |
<!-- /hparams -->

Text between blocks stays as it is.

<!-- hparams-grid config=cfg/sample.py fields=agent.lr,agent.hidden_dims,num_steps -->
<!-- /hparams-grid -->

<!-- hparams-grid config=cfg/sample.py fields=agent.layer_norm presets=small -->
| stale |
<!-- /hparams-grid -->
"""

EXPECTED = """# Sample

<!-- hparams config=cfg/sample.py preset=big -->
| Paper hyperparameter | Paper value | Config field | jaxaug default |
|---|---|---|---|
| Learning rate | 3e-4 | `agent.lr` | 3e-4 |
| Steps | 1M | `num_steps` | 1_000_000 |
| Decay | = steps | `agent.decay_steps` | 1_000_000 |
| Hidden | 2x256 | `agent.hidden_dims` | (256, 256) |
| LayerNorm | yes | `agent.layer_norm` | True |
| Tau | 0.005 | `agent.tau` | 0.005 |
| Weight | 5 | `agent.weight` | 5.0 |
| Epsilon | 1e-5 | `agent.eps` | 1e-5 |
| Data | - | `dataset` | `d4rl:/data/hopper-medium-v2.hdf5` |
| Env | - | `env_id` | '' |
<!-- /hparams -->

Text between blocks stays as it is.

<!-- hparams-grid config=cfg/sample.py fields=agent.lr,agent.hidden_dims,num_steps -->
| Preset | `agent.lr` | `agent.hidden_dims` | `num_steps` |
|---|---|---|---|
| `small` | 0.001 | (32,) | 2000 |
| `big` | 3e-4 | (256, 256) | 1_000_000 |
<!-- /hparams-grid -->

<!-- hparams-grid config=cfg/sample.py fields=agent.layer_norm presets=small -->
| Preset | `agent.layer_norm` |
|---|---|
| `small` | False |
<!-- /hparams-grid -->
"""


@pytest.fixture
def sample_root(tmp_path):
  (tmp_path / "cfg").mkdir()
  (tmp_path / "cfg" / "sample.py").write_text(SAMPLE_CONFIG)
  (tmp_path / "docs" / "methods").mkdir(parents=True)
  page = tmp_path / "docs" / "methods" / "sample.md"
  page.write_text(SAMPLE_PAGE)
  return tmp_path, page


def test_renders_sample_page(sample_root):
  root, page = sample_root
  assert gen.run([str(page)], str(root), check=False, log=lambda s: None) == 0
  assert page.read_text() == EXPECTED
  # Idempotent: a second run changes nothing and --check is clean.
  assert gen.run([str(page)], str(root), check=True, log=lambda s: None) == 0
  assert page.read_text() == EXPECTED


def test_check_lists_stale_pages_and_writes_nothing(sample_root):
  root, page = sample_root
  messages = []
  assert gen.run([str(page)], str(root), check=True, log=messages.append) == 1
  assert page.read_text() == SAMPLE_PAGE  # --check never writes
  assert any("docs/methods/sample.md" in m and "out of date" in m for m in messages)


def test_compact_float_rendering_is_consistent():
  assert gen.format_value(3e-4) == gen.format_value(0.0003) == "3e-4"
  assert gen.format_value(1e-5) == "1e-5"
  assert gen.format_value(2.5e-5) == "2.5e-5"
  assert gen.format_value(0.99) == "0.99"
  assert gen.format_value(1500.0) == "1500.0"
  assert gen.format_value(1e6) == "1e6"
  assert gen.format_value(50_000) == "50_000"
  assert gen.format_value((0.9, 0.999)) == "(0.9, 0.999)"
  assert gen.format_value(("a", 1)) == "('a', 1)"
  assert gen.format_value("x|y") == r"`x\|y`"


@pytest.mark.parametrize("row, field", [
    ("| Learning rate | 3e-4 | `agent.no_such_lr` | |", "agent.no_such_lr"),
    ("| Nested | - | `agent.lr.deeper` | |", "agent.lr.deeper"),
])
def test_missing_field_is_an_error_naming_page_block_and_field(sample_root, row, field):
  root, page = sample_root
  page.write_text(SAMPLE_PAGE.replace("| Tau | 0.005 | `agent.tau` | |", row))
  messages = []
  assert gen.run([str(page)], str(root), check=False, log=messages.append) == 2
  text = "\n".join(messages)
  assert "docs/methods/sample.md:3" in text  # the page and the line of the block
  assert "preset=big" in text  # the block
  assert repr(field) in text and "does not exist" in text
  assert page.read_text() != EXPECTED  # nothing half-written


def test_grid_missing_field_and_unknown_preset_are_errors(sample_root):
  root, page = sample_root
  cache = gen.ConfigCache(str(root))
  bad_field = "<!-- hparams-grid config=cfg/sample.py fields=agent.lr,nope -->\n<!-- /hparams-grid -->"
  with pytest.raises(gen.DocsError, match=r"p\.md:1 .*'nope' does not exist in cfg/sample.py:small"):
    gen.render_page(bad_field, "p.md", cache)
  bad_preset = ("<!-- hparams-grid config=cfg/sample.py fields=agent.lr presets=huge -->\n"
                "<!-- /hparams-grid -->")
  # The sample get_config accepts any preset name, so use a config file that rejects it.
  (root / "cfg" / "strict.py").write_text(
      "PRESETS = ('a',)\n\ndef get_config(arg='a'):\n"
      "  raise ValueError(f'unknown preset {arg!r}')\n")
  with pytest.raises(gen.DocsError, match=r"cfg/strict.py:huge does not build: ValueError"):
    gen.render_page(bad_preset.replace("sample", "strict"), "p.md", cache)
  with pytest.raises(gen.DocsError, match=r"config file 'cfg/none.py' does not exist"):
    gen.render_page(bad_field.replace("sample", "none"), "p.md", cache)
  with pytest.raises(gen.DocsError, match=r"no closing"):
    gen.render_page("<!-- hparams config=cfg/sample.py -->\n| a | b | `agent.lr` | |", "p.md", cache)


def test_repository_method_pages_are_up_to_date():
  """Every docs/methods page that exists renders without error and is current (--check)."""
  pages = glob.glob(os.path.join(ROOT, "docs", "methods", "*.md"))
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "gen_method_docs.py"),
                         "--check"], capture_output=True, text=True, cwd=ROOT, timeout=600)
  assert proc.returncode == 0, (f"{len(pages)} pages; run python experiments/gen_method_docs.py"
                                f"\n{proc.stdout}\n{proc.stderr}")


def test_home_directory_renders_as_tilde(monkeypatch):
  """Default data_dir paths expand ~; the tables must not depend on whose machine renders them."""
  monkeypatch.setenv("HOME", "/home/someone")
  assert gen.format_value("d4rl:/home/someone/.d4rl/datasets/x-v2.hdf5") == \
      "`d4rl:~/.d4rl/datasets/x-v2.hdf5`"
