"""Subprocess helpers of the sweep tests: the environment and the experiments/sweep.py command."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def subprocess_env(**extra) -> dict:
  """os.environ with the repository on PYTHONPATH, plus `extra` (e.g. XLA_FLAGS)."""
  env = dict(os.environ)
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  env.update(extra)
  return env


def sweep_cli(config_file: str, spec: str, workdir: str, fields: dict) -> list[str]:
  """`python experiments/sweep.py --config=configs/<config_file>:tiny --sweep=SPEC ...`."""
  return ([sys.executable, os.path.join(ROOT, "experiments", "sweep.py"),
           f"--config={os.path.join(ROOT, 'configs', config_file)}:tiny", f"--sweep={spec}",
           f"--workdir={workdir}"] + [f"--config.{k}={v}" for k, v in fields.items()])
