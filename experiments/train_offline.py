r"""Offline RL training (TD3+BC, IQL, CQL, MCQ, DTQL) on a dataset, optionally augmented.

  python experiments/train_offline.py --config=configs/td3bc.py:tiny --workdir=/tmp/td3bc
  python experiments/train_offline.py --config=configs/iql.py:hopper-medium \
      --config.data_dir=/data/d4rl --workdir=runs/iql_hopper_medium

Augmentation: `--config.augment.path=npz:FILE` trains on staged generated data (written by
experiments/augment.py); `--config.augment.source=generator:GEN_WORKDIR` generates on the device
inside this run with a trained GTA/SynthER generator (docs/augmentation.md), e.g.

  python experiments/train_offline.py --config=configs/td3bc.py:tiny --workdir=/tmp/td3bc_gta \
      --config.augment.source=generator:/tmp/gta --config.augment.every=500

Re-running with the same --workdir resumes from the latest checkpoint (pass --noresume to
refuse to touch an existing run).
"""

from absl import app, flags, logging
from ml_collections import config_flags

from jaxaug.train.checkpoint import check_resume_flag
from jaxaug.train.config_io import parse_flags
from jaxaug.train.logging import quiet_third_party_logs
from jaxaug.train.offline import train_offline

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/td3bc.py:tiny",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for config, checkpoints and metrics.")
_RESUME = flags.DEFINE_bool("resume", True, "Resume from the latest checkpoint in --workdir. "
                            "With --noresume an existing checkpoint is an error.")


def main(argv):
  del argv
  quiet_third_party_logs()
  workdir = _WORKDIR.value
  try:
    check_resume_flag(workdir, _RESUME.value, config=_CONFIG.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  summary = train_offline(_CONFIG.value, workdir)
  logging.info("final: %s", {k: v for k, v in summary.items() if k != "state"})
  print({k: v for k, v in summary.items() if k != "state"})


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main, flags_parser=parse_flags)
