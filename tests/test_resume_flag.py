"""The mains' --resume/--noresume contract (jaxaug.train.checkpoint.check_resume_flag)."""

import os
import subprocess
import sys

import pytest

from jaxaug.train.checkpoint import check_resume_flag

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_check_resume_flag(tmp_path):
  workdir = str(tmp_path / "run")
  check_resume_flag(workdir, resume=False)  # nothing there: fine
  os.makedirs(os.path.join(workdir, "checkpoints", "500.orbax-checkpoint-tmp"))
  check_resume_flag(workdir, resume=False)  # an unfinished save is not a checkpoint
  os.makedirs(os.path.join(workdir, "checkpoints", "1000"))
  check_resume_flag(workdir, resume=True)
  with pytest.raises(ValueError, match=r"already holds checkpoints.*--resume"):
    check_resume_flag(workdir, resume=False)


@pytest.mark.parametrize("main,config", [
    ("train_online.py", "configs/sac.py:tiny"),
    ("train_offline.py", "configs/td3bc.py:tiny"),
    ("train_diffusion.py", "configs/gta.py:tiny"),
])
def test_mains_refuse_an_existing_run_with_noresume(tmp_path, main, config):
  os.makedirs(tmp_path / "checkpoints" / "100")
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "experiments", main), f"--config={config}",
       f"--workdir={tmp_path}", "--noresume"], cwd=ROOT, capture_output=True, text=True,
      timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode != 0
  assert "already holds checkpoints" in proc.stderr
  assert not os.path.exists(tmp_path / "metrics.jsonl")  # nothing was started
