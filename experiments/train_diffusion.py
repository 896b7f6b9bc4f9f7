r"""Train a trajectory (GTA) or transition (SynthER) diffusion generator.

  python experiments/train_diffusion.py --config=configs/gta.py:tiny --workdir=/tmp/gta
  python experiments/train_diffusion.py --config=configs/synther.py:tiny --workdir=/tmp/synther

Runs through the generic train loop: checkpoints in WORKDIR/checkpoints, metrics in
WORKDIR/metrics.jsonl, config in WORKDIR/config.json; re-running with the same --workdir resumes
from the latest checkpoint exactly (--noresume refuses an existing run).
"""

from absl import app, flags, logging
from ml_collections import config_flags

from jaxaug.augment import pipeline
from jaxaug.train.checkpoint import check_resume_flag
from jaxaug.train.config_io import parse_flags
from jaxaug.train.logging import quiet_third_party_logs

_CONFIG = config_flags.DEFINE_config_file("config", None, "e.g. configs/gta.py:tiny",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for config, checkpoints and metrics.")
_RESUME = flags.DEFINE_bool("resume", True, "Resume from the latest checkpoint in --workdir. "
                            "With --noresume an existing checkpoint is an error.")


def main(argv):
  del argv
  quiet_third_party_logs()
  try:
    check_resume_flag(_WORKDIR.value, _RESUME.value, config=_CONFIG.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  _, last = pipeline.train_generator(_CONFIG.value, _WORKDIR.value)
  logging.info("final: %s", last)
  print({k: float(v) for k, v in last.items()})


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main, flags_parser=parse_flags)
