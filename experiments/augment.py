r"""Generate augmented data with a trained generator (GTA, SynthER) or S4RL noise.

  python experiments/augment.py --config=configs/gta.py:tiny --workdir=/tmp/gta --out=/tmp/gta.npz
  python experiments/augment.py --config=configs/gta.py:tiny --workdir=/tmp/gta --out=/tmp/s4rl.npz \
      --s4rl

Generation runs in chunks saved under OUT.chunks/; kill it and run the same command again to
resume without losing or duplicating samples. OUT (our npz format, loadable as npz:OUT) is
written atomically once all `config.num_transitions` transitions exist, with metadata describing
how it was made.
"""

import os

from absl import app, flags, logging
from ml_collections import config_flags

from jaxaug.augment import pipeline, s4rl
from jaxaug.data.loaders import load_dataset, save_npz
from jaxaug.train.config_io import check_workdir_config, parse_flags
from jaxaug.train.logging import quiet_third_party_logs

_CONFIG = config_flags.DEFINE_config_file("config", None, "e.g. configs/gta.py:tiny",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of experiments/train_diffusion.py.")
_OUT = flags.DEFINE_string("out", None, "Output npz file.")
_S4RL = flags.DEFINE_bool("s4rl", False, "Write S4RL-noised real data instead (no generator).")
_S4RL_STD = flags.DEFINE_float("s4rl_std", s4rl.DEFAULT_STD, "S4RL noise std.")


def main(argv):
  del argv
  quiet_third_party_logs()
  config = _CONFIG.value
  if os.path.isdir(_OUT.value):
    raise app.UsageError(f"--out={_OUT.value} is a directory, expected an npz file name")
  if _S4RL_STD.value < 0:
    raise app.UsageError(f"--s4rl_std must be >= 0, got {_S4RL_STD.value}")
  if _S4RL.value:
    real = load_dataset(config.dataset)
    out = s4rl.augment(real, seed=config.seed, std=_S4RL_STD.value)
    save_npz(out, _OUT.value)
    print({"transitions": len(out), "out": _OUT.value})
    return
  if not _WORKDIR.value:
    raise app.UsageError("--workdir is required (the trained generator's workdir)")
  try:  # a workdir of another job (an offline agent, another generator method)
    check_workdir_config(config, _WORKDIR.value, compare_fields=False)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  gen = pipeline.generate(config, _WORKDIR.value, _OUT.value, log=logging.info)
  real = load_dataset(config.dataset)
  summary = dict(pipeline.summarize(gen, real), out=_OUT.value)
  logging.info("%s", summary)
  print(summary)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "out"])
  app.run(main, flags_parser=parse_flags)
