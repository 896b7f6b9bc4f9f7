"""Writing and reading the experiment config stored in a workdir, and the mains' flag parsing.

A workdir belongs to one job: `config.json` records the config it was made with. Writing a
config into a workdir that holds another job's run (train_offline into a train_diffusion
workdir, a td3bc run resumed with an iql config, other network sizes...) is refused before
anything is written, with the fields that differ. Fields that only say how long or how often
(num_steps, eval_every, ...) may change when a run is resumed, so a run can be extended.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any, Iterable

from absl import flags
import ml_collections

from jaxaug.utils import atomic_write_text

# Leaf names that may differ between a workdir's config.json and the config resuming it: run
# length, logging/evaluation/checkpoint cadence, generation-time settings, data location.
RESUMABLE_FIELDS = frozenset({
    "num_steps", "num_env_steps", "lr_decay_steps", "actor_lr_decay_steps", "log_every",
    "eval_every", "eval_episodes", "checkpoint_every", "max_checkpoints", "num_transitions",
    "checkpoint_step", "samples_per_chunk", "windows_per_chunk", "distributed", "data_dir",
    "record_infos",
})
# Subtrees used only when generating from a trained model (experiments/augment.py).
RESUMABLE_SUBTREES = ("sampler",)
# Dataset specs may move (another data_dir): compared by format and file name.
_DATASET_FIELDS = ("dataset", "offline_dataset")


def job_kind(config: Any) -> str:
  """Which entry point a config is for, e.g. 'train_offline (td3bc)', 'train_diffusion (gta)'."""
  keys = set(config.keys())
  if "method" in keys:
    return f"train_diffusion ({config['method']})"
  if "num_env_steps" in keys:
    return f"train_online ({config.get('agent_name', 'sac')})"
  if "agent_name" in keys:
    return f"train_offline ({config['agent_name']})"
  return "unknown job"


def _plain(config: Any) -> dict:
  if isinstance(config, ml_collections.ConfigDict):
    return json.loads(config.to_json_best_effort(sort_keys=True))
  return json.loads(json.dumps(config))


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _dataset_key(spec: Any) -> Any:
  if not isinstance(spec, str):
    return spec
  fmt, sep, path = spec.partition(":")
  return (fmt if sep else "", os.path.basename(path if sep else spec))


def config_differences(old: Any, new: Any) -> list[str]:
  """Fields of `new` that differ from `old` and matter for resuming (see RESUMABLE_FIELDS).

  Fields present in only one of them are ignored (configs saved before a field was added);
  the job kind is compared separately.
  """
  a, b = _flatten(_plain(old)), _flatten(_plain(new))
  out = []
  for key in sorted(set(a) & set(b)):
    leaf = key.rsplit(".", 1)[-1]
    if leaf in RESUMABLE_FIELDS or key.split(".", 1)[0] in RESUMABLE_SUBTREES:
      continue
    x, y = a[key], b[key]
    if leaf in _DATASET_FIELDS:
      x, y = _dataset_key(x), _dataset_key(y)
    if x != y:
      out.append(f"{key}: {a[key]!r} in the workdir, {b[key]!r} here")
  return out


def _has_checkpoints(workdir: str) -> bool:
  directory = os.path.join(workdir, "checkpoints")
  return os.path.isdir(directory) and any(
      not name.endswith(".orbax-checkpoint-tmp") for name in os.listdir(directory))


def check_workdir_config(config: ml_collections.ConfigDict, workdir: str, *,
                         compare_fields: bool = True) -> None:
  """Raises a ValueError when `workdir` holds a run of another job or of another config.

  `compare_fields=False` checks only the job kind (using a trained model, e.g. generating from
  a train_diffusion workdir, where training-only fields may differ; the checkpoint's arrays are
  compared on restore).
  """
  path = os.path.join(workdir, "config.json")
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ValueError(f"--workdir={workdir} is a file, expected a directory")
  if not os.path.exists(path):
    return
  try:
    old = load_config(workdir)
  except ValueError:
    if _has_checkpoints(workdir):
      raise
    return  # an unreadable config.json without checkpoints: a fresh start rewrites it
  old_kind, new_kind = job_kind(old), job_kind(config)
  if old_kind != new_kind:
    raise ValueError(f"--workdir={workdir} holds a {old_kind} run ({path}); this is a "
                     f"{new_kind} config. Choose another --workdir")
  if not compare_fields or not _has_checkpoints(workdir):
    return
  diffs = config_differences(old, config)
  if diffs:
    shown = "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")
    raise ValueError(f"--workdir={workdir} holds checkpoints of a run made with another config "
                     f"({path}): {shown}. Resume with that config (only run length and "
                     f"logging/evaluation/checkpoint periods may change) or choose another "
                     f"--workdir")


def save_config(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Write `config.json` (atomically) to the workdir and return its path.

  Refuses (ValueError, nothing written) a workdir holding another job's or config's run.
  """
  check_workdir_config(config, workdir)
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, "config.json")
  atomic_write_text(path, config.to_json_best_effort(indent=2, sort_keys=True))
  return path


def load_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, "config.json")
  try:
    with open(path) as f:
      data = json.load(f)
  except FileNotFoundError as e:
    raise ValueError(f"{path}: missing (not a jaxaug workdir?)") from e
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from e
  if not isinstance(data, dict):
    raise ValueError(f"{path}: expected a JSON object, got a {type(data).__name__}")
  return ml_collections.ConfigDict(data)


# ------------------------------------------------------------------------------------------
# Flag parsing for the experiments' mains: app.run(main, flags_parser=parse_flags).


def _usage_exit(message: str) -> None:
  sys.stderr.write(f"FATAL Flags parsing error: {message}\n"
                   "Pass --helpshort or --helpfull to see help on flags.\n")
  sys.exit(1)


def _last_line(text: str) -> str:
  lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
  return lines[-1] if lines else text


def _override_args(argv: Iterable[str], key: str) -> list[str]:
  return [a for a in argv if a.startswith("--") and "." in a.split("=", 1)[0]
          and key in a.split("=", 1)[0].split(".")]


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing with clear errors for config flags (ml_collections' config_flags).

  An override of a field the config does not have (`--config.nope=1`) and a config file that
  cannot be loaded (`--config=configs/missing.py`) end the program with a usage error naming
  the flag, instead of a traceback (or, for the file, an error only when the config is first
  used).
  """
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    message = str(e)
    if "Error whilst parsing config file" in message:  # get_config raised: keep its last line
      head = message.split(":", 1)[0] if message.startswith("flag ") else "--config"
      head = message[:message.index("Error whilst")].rstrip(": ") or head
      message = f"{head}: {_last_line(message)}"
    _usage_exit(message)
  except (AttributeError, KeyError) as e:  # an override naming no field of the config
    inner = e
    while inner.args and isinstance(inner.args[0], BaseException):
      inner = inner.args[0]
    text = str(inner.args[0]) if inner.args else str(inner)
    found = re.search(r"[A-Za-z_][A-Za-z0-9_]*", text)
    key = found.group(0) if found else text
    hint = re.search(r"Did you mean [^\n]*", text)
    bad = _override_args(argv[1:], key) or ["a --config.* flag"]
    _usage_exit(f"{bad[0]}: the config has no field '{key}'"
                + (f"; {hint.group(0)}" if hint else "; check the spelling against the config "
                   "file's fields"))
  except OSError as e:  # an override of a config whose file could not be loaded
    _usage_exit(f"--config: {e}")
  for name, flag in flags.FLAGS._flags().items():  # pylint: disable=protected-access
    value = flag.value
    if type(value).__name__ == "_ErrorConfig":
      try:
        value.keys()
      except OSError as e:
        raw = [a.split("=", 1)[1] for a in argv[1:] if a.startswith(f"--{name}=")]
        _usage_exit(f"--{name}={raw[-1] if raw else ''}: cannot load the config file "
                    f"({_last_line(str(e))})")
  return rest
