"""Online RL training (SAC): `python experiments/train_online.py --config=configs/sac.py:hopper
--workdir=DIR [--config.num_env_steps=300000 ...]`. Re-running with the same workdir resumes
exactly from the latest checkpoint
(--noresume refuses an existing run)."""

from __future__ import annotations

import json

from absl import app, flags, logging
from ml_collections import config_flags

from jaxaug.train.checkpoint import check_resume_flag
from jaxaug.train.config_io import parse_flags
from jaxaug.train.logging import quiet_third_party_logs
from jaxaug.train.online import train_online

_CONFIG = config_flags.DEFINE_config_file("config", "configs/sac.py:hopper",
                                          "SAC config file with preset.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output and checkpoint directory.",
                               required=True)
_RESUME = flags.DEFINE_bool("resume", True, "Resume from the latest checkpoint in --workdir. "
                            "With --noresume an existing checkpoint is an error.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  quiet_third_party_logs()
  try:
    check_resume_flag(_WORKDIR.value, _RESUME.value, config=_CONFIG.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  summary = train_online(_CONFIG.value, _WORKDIR.value)
  logging.info("summary: %s", json.dumps(summary))
  print(json.dumps(summary))


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
