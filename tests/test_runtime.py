"""jaxaug.runtime: the XLA CPU flag the mains set, and that importing jaxaug does not start
the JAX backend (otherwise the flag, read once at backend start, would come too late)."""

import os
import subprocess
import sys

import pytest

from jaxaug import runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_flag_added_to_empty_and_existing_xla_flags():
  env = {}
  assert runtime.configure_xla_cpu(env) == "--xla_cpu_multi_thread_eigen=false"
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
  runtime.configure_xla_cpu(env)
  assert env["XLA_FLAGS"] == ("--xla_force_host_platform_device_count=4 "
                              "--xla_cpu_multi_thread_eigen=false")
  assert runtime.configure_xla_cpu(env) is None  # idempotent
  assert env["XLA_FLAGS"].count("multi_thread_eigen") == 1


def test_user_choice_and_opt_out_win():
  env = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=true"}
  assert runtime.configure_xla_cpu(env) is None
  assert env["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=true"
  env = {runtime.OPT_OUT: "1"}
  assert runtime.configure_xla_cpu(env) is None and "XLA_FLAGS" not in env


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
