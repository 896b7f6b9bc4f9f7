r"""Train a trajectory (GTA) or transition (SynthER) diffusion generator, or ATraDiff's diffuser.

  python experiments/train_diffusion.py --config=configs/gta.py:tiny --workdir=/tmp/gta
  python experiments/train_diffusion.py --config=configs/synther.py:tiny --workdir=/tmp/synther
  python experiments/train_diffusion.py --config=configs/atradiff.py:tiny --workdir=/tmp/atd

An ATraDiff config (one with `config.atradiff`) trains its generators, one per preset length,
then its length estimator, each a resumable stage in WORKDIR/<stage>/ (metrics.jsonl of every
stage merged into WORKDIR/metrics.jsonl), and leaves the assembled diffuser in WORKDIR/diffuser/
for online runs: `experiments/train_online.py --config=configs/atradiff.py:PRESET
--config.atradiff.diffuser_dir=WORKDIR` restores it after checking it was trained on the same
dataset with the same diffuser config (jaxaug.augment.atradiff.training). The training key is
the one an online run of the same --config.seed would use, so both train the same diffuser.

Runs through the generic train loop: checkpoints in WORKDIR/checkpoints, metrics in
WORKDIR/metrics.jsonl, config in WORKDIR/config.json; re-running with the same --workdir resumes
from the latest checkpoint exactly (--noresume refuses an existing run).
"""

import json
import os

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


def _train_atradiff(config, workdir: str, resume: bool) -> dict:
  # pylint: disable=g-import-not-at-top
  from jaxaug.augment.atradiff import training
  from jaxaug.data.loaders import load_dataset
  key = training.diffuser_key(int(config.get("seed", 0)))
  try:
    check_resume_flag(workdir, True, config=training.training_config(config, key))
    if not resume and training.has_training(workdir):
      raise ValueError(f"--workdir={workdir} already holds a (partly) trained ATraDiff diffuser; "
                       "pass --resume to continue or restore it, or choose another --workdir")
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  ds = load_dataset(config.atradiff.offline_dataset)
  _, meta = training.train_or_restore(config, ds, workdir, key)
  if meta.get("restored"):
    print(f"ATraDiff diffuser in {workdir} already trained: restored, nothing trained")
    with open(os.path.join(workdir, "summary.json")) as f:
      return json.load(f)
  return meta["summary"]


def main(argv):
  del argv
  quiet_third_party_logs()
  if "atradiff" in _CONFIG.value:
    summary = _train_atradiff(_CONFIG.value, _WORKDIR.value, _RESUME.value)
    logging.info("final: %s", summary["stages"])
    print(json.dumps(summary["stages"]))
    return
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
