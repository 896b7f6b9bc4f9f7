"""Importing jaxaug (every module) and the mains must not start the JAX backend: XLA reads
XLA_FLAGS and JAX its platform settings once, when the backend starts, so a module computing
with JAX at import time would silently override what a user sets after importing jaxaug."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("main", ["train_offline", "train_online"])
def test_importing_jaxaug_and_the_mains_does_not_start_the_backend(main):
  code = f"""
import importlib, pkgutil
import jaxaug
for m in pkgutil.walk_packages(jaxaug.__path__, 'jaxaug.'):
  importlib.import_module(m.name)
importlib.import_module('experiments.{main}')
from jax._src import xla_bridge
assert not xla_bridge._backends, 'a module computes with JAX at import time'
print('ok')
"""
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
