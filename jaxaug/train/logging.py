"""Metric logging: metrics.jsonl, TensorBoard event files and a console progress line."""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Mapping

import numpy as np
from absl import logging as absl_logging


def _to_float(v: Any) -> float:
  return float(np.asarray(v).mean())


class MetricLogger:
  """Appends one JSON object per `log` call (with `step`) and mirrors it to TensorBoard.

  Only the main process (process 0) writes; others are no-ops. On resume the jsonl file is
  truncated to the resumed step so that it matches an uninterrupted run.
  """

  def __init__(self, workdir: str, total_steps: int, is_main: bool = True,
               resume_step: int | None = None, tensorboard: bool = True):
    self.is_main = is_main
    self.total_steps = int(total_steps)
    self._t0 = time.time()
    self._last = (self._t0, resume_step or 0)
    self._writer = None
    if not is_main:
      return
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, "metrics.jsonl")
    if resume_step is not None and os.path.exists(self.path):
      _truncate_jsonl(self.path, resume_step)
    self._file = open(self.path, "a")
    if tensorboard:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._writer = SummaryWriter(os.path.join(workdir, "tb"))

  def log(self, step: int, metrics: Mapping[str, Any], console: bool = True) -> None:
    if not self.is_main:
      return
    record = {"step": int(step)}
    record.update({k: _to_float(v) for k, v in metrics.items()})
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()
    if self._writer is not None:
      for k, v in record.items():
        if k != "step" and math.isfinite(v):
          self._writer.add_scalar(k, v, int(step))
      self._writer.flush()
    if console:
      now = time.time()
      last_t, last_step = self._last
      rate = (step - last_step) / max(now - last_t, 1e-9)
      eta = (self.total_steps - step) / rate if rate > 0 else float("inf")
      self._last = (now, step)
      shown = ", ".join(f"{k}={record[k]:.4g}" for k in sorted(record) if k != "step")
      absl_logging.info("[%d/%d %.1f%%] %.1f steps/s ETA %s | %s", step, self.total_steps,
                        100.0 * step / max(self.total_steps, 1), rate, _fmt_eta(eta), shown)

  def close(self) -> None:
    if self.is_main:
      self._file.close()
      if self._writer is not None:
        self._writer.close()


def _fmt_eta(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f"{h:d}:{m:02d}:{s:02d}"


def _truncate_jsonl(path: str, max_step: int) -> None:
  """Keep only records with step <= max_step (drop lines logged after the last checkpoint)."""
  kept = []
  with open(path) as f:
    for line in f:
      try:
        if json.loads(line)["step"] <= max_step:
          kept.append(line)
      except (ValueError, KeyError):
        continue
  from jaxaug.utils import atomic_write_text  # pylint: disable=g-import-not-at-top
  atomic_write_text(path, "".join(kept))


def read_metrics(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


class _DropThirdPartyInfo:
  """absl handler filter: drop INFO records from orbax/jax internals (they flood the console)."""

  PREFIXES = ("orbax", "jax/_src", "etils")

  def filter(self, record) -> bool:
    if record.levelno >= 30:  # WARNING and above always pass
      return True
    path = record.pathname.replace("\\", "/")
    return not any(f"/{p}" in path for p in self.PREFIXES)


def quiet_third_party_logs() -> None:
  """Keep the console readable: third-party INFO logs are dropped, ours and warnings kept."""
  handler = absl_logging.get_absl_handler()
  if not any(isinstance(f, _DropThirdPartyInfo) for f in handler.filters):
    handler.addFilter(_DropThirdPartyInfo())
