"""experiments/atradiff_quality.py end to end on the tiny config: the report's fields exist,
are finite, the references order as they must (real data has ~0 dynamic error, random
pairing of real states a large one), and out-of-range actions are counted."""

import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_atradiff_quality_report_on_tiny_config():
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "experiments", "atradiff_quality.py"),
       "--config=configs/atradiff.py:tiny", "--num_starts=64"], cwd=ROOT, capture_output=True,
      text=True, timeout=900, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout[proc.stdout.index("{"):])
  assert out["num_trajectories"] == 64 and out["num_transitions"] > 0
  assert out["real"]["mse"] < 1e-6 < out["random_pairing_mse"]
  assert np.isfinite(out["synthetic"]["mse"])
  assert sorted(int(k) for k in out["per_generator"]) == [4, 8]  # the tiny preset's lengths
  for row in out["per_generator"].values():
    assert all(np.isfinite(row[k]) and row[k] >= 0
               for k in ("first_state_err", "mse", "reward_abs_err"))
    assert 0 <= row["out_of_range_entry_share"] <= 1
  # Out-of-range actions are reported, not clipped away silently: the tiny generator samples
  # many (67% of entries before clipping existed); the count refers to the stored rows.
  oor = out["action_out_of_range"]
  assert oor["clipped"] is True and oor["max_action"] == 1.0
  assert 0 < oor["rows"] <= out["num_transitions"] and oor["rows"] <= oor["entries"]
  assert oor["row_share"] == oor["rows"] / out["num_transitions"]
  assert 0 < oor["entry_share"] <= 1
