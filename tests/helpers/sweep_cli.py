"""Subprocess helpers of the sweep tests: the environment and the experiments/sweep.py command."""

import os
import signal
import subprocess
import sys
import time

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


def kill_after_first_checkpoint(cmd: list[str], env: dict, checkpoint_dir: str,
                                timeout: float = 600) -> list[int]:
  """Starts `cmd`, SIGKILLs it as soon as `checkpoint_dir` holds a step directory, and returns
  the steps checkpointed by then (the caller checks the run was killed mid-way)."""
  proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if os.path.isdir(checkpoint_dir) and any(d.isdigit() for d in os.listdir(checkpoint_dir)):
      break
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  return sorted(int(d) for d in os.listdir(checkpoint_dir) if d.isdigit())
