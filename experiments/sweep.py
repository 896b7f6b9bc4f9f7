r"""Sweeps as one sharded program (docs/sweeps.md).

  python experiments/sweep.py --config=configs/td3bc.py:tiny \
      --sweep='agent.alpha=[1,2.5,5] seed=range(5)' --workdir=/tmp/td3bc_sweep
  python experiments/sweep.py --config=configs/gta.py:tiny \
      --sweep='diffusion.learning_rate=[3e-4,1e-3] seed=range(2)' --workdir=/tmp/gta_sweep

Offline agents (train_offline's configs) and diffusion generators (GTA, SynthER:
train_diffusion's configs). Points differing only in `seed` and float `agent.*` (generators:
`diffusion.*`) fields that are leaves of the state train in one jitted program, their
states stacked on a `sweep` axis sharded over the devices; other points form further programs,
run one after another. Per point: WORKDIR/points/<index>_<overrides>/ with config.json,
metrics.jsonl and summary.json as a single run writes them (generators also the final
checkpoint, so experiments/augment.py --workdir=<point dir> generates from it); WORKDIR/sweep.json
lists points and groups. Re-running the same command resumes (the sweep checkpoints as one unit);
summarise with experiments/sweep_report.py WORKDIR. Multi-host: --config.distributed=True on
every host.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxaug.train import sweep as sweep_lib
from jaxaug.train.checkpoint import check_resume_flag
from jaxaug.train.config_io import parse_flags
from jaxaug.train.logging import quiet_third_party_logs

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/td3bc.py:tiny",
                                          lock_config=True)
_SWEEP = flags.DEFINE_string("sweep", None, "Grid, e.g. 'agent.alpha=[1,2.5] seed=range(4)', or "
                             "a Python file whose get_sweep() returns a list of override dicts.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep directory (points/, groups/, sweep.json).")
_RESUME = flags.DEFINE_bool("resume", True, "Resume from the sweep's checkpoints in --workdir. "
                            "With --noresume existing checkpoints are an error.")
_SWEEP_DEVICES = flags.DEFINE_integer("sweep_devices", 0, "Devices on the 'sweep' mesh axis "
                                      "(must divide the device count); 0 = the largest divisor "
                                      "not above the number of points. The others shard batches.")


def main(argv):
  del argv
  quiet_third_party_logs()
  config_arg = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--config=")), "")
  try:
    points = sweep_lib.parse_spec(_SWEEP.value)
    groups_dir = os.path.join(_WORKDIR.value, "groups")
    if not _RESUME.value and os.path.isdir(groups_dir):
      for g in os.listdir(groups_dir):
        check_resume_flag(os.path.join(groups_dir, g), False)
    results = sweep_lib.run_sweep(_CONFIG.value, points, _WORKDIR.value,
                                          where=config_arg, spec=_SWEEP.value,
                                          sweep_devices=_SWEEP_DEVICES.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  for res in results:
    shown = {k: v for k, v in res.items() if k != "state"}
    logging.info("point: %s", shown)
  print(f"{len(results)} points done; summary: python experiments/sweep_report.py "
        f"{_WORKDIR.value}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "sweep", "workdir"])
  app.run(main, flags_parser=parse_flags)
