r"""jaxaug's side of the side-by-side comparison with the PyTorch references (issue 17).

  python experiments/bench_vs_reference.py --out=/tmp/bench_vs_reference.json
  python experiments/bench_vs_reference.py --reference=torch_times.json --rounds=5
  python experiments/bench_vs_reference.py --only=mixer_unet_train,dtql_act_one_step

Every row is one workload of the issue's table, at the same shapes (float32; Hopper-sized
spaces: obs 11, act 3, GTA windows H 32 x D 15 = 11 obs + 3 actions + 1 reward):

  mixer_unet_train          GTA MixerUnet (dim 16, mults 1,2,4,8, attention; 18.7M params) AdamW
                            step at batch 64 (`--mixer_impl`: matmul, the default; conv for the
                            former nn.Conv network)
  dtql_act_one_step         DTQL one-step policy, batch 1, host observation in / host action
                            out, a fresh key per call (`dtql.make_act_fn` on `dtql.act_params`)
  dtql_act_maxq1024         the same with the paper's 1024 max-Q candidates (softmax pick)
  synther_train_w1024       SynthER residual MLP width 1024 (6.5M, rows of 42) step, batch 256
  synther_train_w2048       the same at width 2048 (25.6M)
  gta_generate_official     one GTA generation call of 16 windows (partial noising mu 0.5, 128-step
                            Heun with churn, w 2): official guidance (191 evaluations / window)
  gta_generate_guide_corr   the same, guidance in both Heun stages (254 evaluations / window)
  td3bc_update_k100         TD3+BC update at batch 256, 100 updates per jitted dispatch
  td3bc_update_k1           TD3+BC update at batch 256, 1 update per dispatch
  iql_update_k100           IQL update at batch 256, 100 per dispatch
  dtql_update_k100          full DTQL update (critic + diffusion BC + policy) at batch 256, 100
                            per dispatch

Rows are timed in interleaved rounds (every row once per round, so load changes hit all rows
alike); a row's figure is its best round (`median_ms` is recorded too). ms is per step / per call
as the name says (per update for the `_k` rows). "share of peak" divides XLA's FLOP count of the
work by the fp32 matmul peak measured in the same run (the better of a measurement before and
after the rows); the training FLOPs of the diffusion nets are 3x the forward pass.

`--reference=FILE.json` holds reference timings in ms per the same unit, keyed by row name:

  {"mixer_unet_train": 1450.0, "dtql_act_one_step": 0.35, "td3bc_update_k100": 1.9}

Rows missing from the file show no ratio. The ratio column is reference ms / jaxaug ms (above 1:
jaxaug is faster). The JSON output (--out) holds every row, the peak, the load average before and
after, and the machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import json
import os
import statistics
import sys
import time

import jax
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxaug import bench  # noqa: E402
from jaxaug.agents import dtql  # noqa: E402
from jaxaug.nets import denoisers  # noqa: E402
from jaxaug.types import EnvSpec  # noqa: E402



@contextlib.contextmanager
def _private_flags():
  """The bench modules reused here define absl flags of the same names (--out, --repeats):
  while importing them, their flags go to a private FlagValues (their reusable functions take
  arguments, never flags). One private FlagValues per module."""
  private = flags.FlagValues()
  saved = {n: getattr(flags, n) for n in dir(flags) if n.startswith("DEFINE")}
  for n, f in saved.items():
    setattr(flags, n, functools.partial(f, flag_values=private))
  try:
    yield
  finally:
    for n, f in saved.items():
      setattr(flags, n, f)


def _import(name):
  with _private_flags():
    return importlib.import_module(name)


bench_diffusion = _import("experiments.bench_diffusion")
bench_dtql = _import("experiments.bench_dtql")
bench_offline = _import("experiments.bench_offline")

ROWS = ("mixer_unet_train", "dtql_act_one_step", "dtql_act_maxq1024", "synther_train_w1024",
        "synther_train_w2048", "gta_generate_official", "gta_generate_guide_corr",
        "td3bc_update_k100", "td3bc_update_k1", "iql_update_k100", "dtql_update_k100")

_ONLY = flags.DEFINE_list("only", [], f"Subset of rows: {', '.join(ROWS)}.")
_REFERENCE = flags.DEFINE_string("reference", None, "JSON {row name: reference ms}.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Interleaved timing rounds.")
_OUT = flags.DEFINE_string("out", "bench_vs_reference.json", "JSON output path.")
_MIXER_IMPL = flags.DEFINE_string("mixer_impl", "matmul", "MixerUnet implementation: matmul | "
                                  "conv.")
_MIXER_BATCH = flags.DEFINE_integer("mixer_batch", 64, "MixerUnet training batch.")
_GEN_WINDOWS = flags.DEFINE_integer("gen_windows", 16, "GTA windows per generation call.")
_SAMPLER_STEPS = flags.DEFINE_integer("sampler_steps", 128, "EDM schedule length N.")
_PEAK_N = flags.DEFINE_integer("peak_n", 4096, "Size of the square matmul measuring the peak.")
_ACT_INNER = flags.DEFINE_integer("act_inner", 200, "One-step act calls averaged per round.")

HOPPER = EnvSpec(11, 3)
WINDOW = (32, 15)  # GTA window on Hopper: H 32, D = 11 + 3 + 1


@dataclasses.dataclass
class Row:
  name: str
  call: object  # zero-argument callable, one timed unit of work (results blocked on)
  units: int  # steps / updates / calls per invocation of `call`
  flops_per_unit: float  # 0: no share of peak shown
  info: dict


def _gta_rows(only):
  rows = []
  kw = dict(denoisers.PRESETS["mixer_unet_paper"], cond_dim=1)
  if "mixer_unet_train" in only:
    st = bench_diffusion.make_setup("mixer_unet", dict(kw, impl=_MIXER_IMPL.value), WINDOW, 1)
    call, flops = bench_diffusion.make_train_call(st, _MIXER_BATCH.value, 1)
    rows.append(Row("mixer_unet_train", call, 1, flops,
                    {"batch": _MIXER_BATCH.value, "window": list(WINDOW), "impl":
                     _MIXER_IMPL.value,
                     "params": denoisers.count_params(st["state"].params)}))
  gen = [m for m in ("official", "guide_corr") if f"gta_generate_{m}" in only]
  if gen:
    st = bench_diffusion.make_setup("mixer_unet", kw, WINDOW, 1)
    calls, transitions = bench_diffusion.make_gen_calls(st, _GEN_WINDOWS.value,
                                                        _SAMPLER_STEPS.value)
    for short, mode in (("official", "official"), ("guide_corr", "guide_correction")):
      if short in gen:
        call, evals = calls[mode]
        rows.append(Row(f"gta_generate_{short}", call, 1,
                        st["item_flops"] * _GEN_WINDOWS.value * evals,
                        {"windows": _GEN_WINDOWS.value, "evaluations_per_window": evals,
                         "window_evaluations_per_call": evals * _GEN_WINDOWS.value,
                         "transitions_per_call": transitions}))
  return rows


def _synther_rows(only):
  rows = []
  for width, preset in ((1024, "resmlp_1024"), (2048, "resmlp_paper")):
    name = f"synther_train_w{width}"
    if name in only:
      st = bench_diffusion.make_setup("resmlp", denoisers.PRESETS[preset], (42,), 0)
      call, flops = bench_diffusion.make_train_call(st, 256, 1)
      rows.append(Row(name, call, 1, flops, {"batch": 256, "row": 42,
                                             "params": denoisers.count_params(
                                                 st["state"].params)}))
  return rows


def _agent_rows(only):
  rows = []
  data = None
  for name, agent, k in (("td3bc_update_k100", "td3bc", 100), ("td3bc_update_k1", "td3bc", 1),
                         ("iql_update_k100", "iql", 100)):
    if name in only:
      if data is None:
        data = jax.device_put(bench_offline.make_data(obs_dim=HOPPER.obs_dim,
                                                      act_dim=HOPPER.act_dim))
      call, flops = bench_offline.make_update_call(agent, HOPPER, data, 256, k)
      rows.append(Row(name, call, k, flops, {"batch": 256, "updates_per_dispatch": k}))
  if "dtql_update_k100" in only:
    call, flops, _ = bench_dtql.make_train_call(HOPPER, 256, 100)
    rows.append(Row("dtql_update_k100", call, 100, flops,
                    {"batch": 256, "updates_per_dispatch": 100}))
  acts = [n for n in ("dtql_act_one_step", "dtql_act_maxq1024") if n in only]
  if acts:
    state = jax.jit(lambda kk: dtql.init(kk, HOPPER, dtql.get_config()))(jax.random.key(0))
    obs = np.asarray(jax.random.normal(jax.random.key(1), (1, HOPPER.obs_dim)))
    key = jax.random.key(2)
    for name, n in (("dtql_act_one_step", 1), ("dtql_act_maxq1024", 1024)):
      if name in acts:
        st = state.replace(hp=state.hp.replace(num_candidates=n))
        one = bench_dtql.make_act_call(st, "params")
        inner = _ACT_INNER.value if n == 1 else 1
        call = lambda one=one, inner=inner: [one(obs, key) for _ in range(inner)]
        rows.append(Row(name, call, inner, 0.0, {"batch": 1, "candidates": n}))
  return rows


def _time_rows(rows, rounds):
  for r in rows:  # compile + warm up (a second warm-up call only for the short rows)
    t0 = time.perf_counter()
    bench.block(r.call())
    if time.perf_counter() - t0 < 5.0:
      bench.block(r.call())
  times = {r.name: [] for r in rows}
  for i in range(rounds):
    for r in rows:
      t0 = time.perf_counter()
      bench.block(r.call())
      times[r.name].append((time.perf_counter() - t0) / r.units)
    print(f"round {i + 1}/{rounds} done, load {os.getloadavg()[0]:.1f}", flush=True)
  return times


def main(argv):
  del argv
  unknown = [n for n in _ONLY.value if n not in ROWS]
  if unknown:
    raise app.UsageError(f"--only: unknown rows {unknown}; expected some of {list(ROWS)}")
  if _MIXER_IMPL.value not in ("matmul", "conv"):
    raise app.UsageError(f"--mixer_impl must be matmul or conv, got {_MIXER_IMPL.value!r}")
  reference = {}
  if _REFERENCE.value:
    with open(_REFERENCE.value) as f:
      reference = json.load(f)
    if not isinstance(reference, dict) or not all(
        isinstance(v, (int, float)) and v > 0 for v in reference.values()):
      raise app.UsageError(f"--reference={_REFERENCE.value}: expected a JSON object "
                           "{row name: reference ms > 0}")
    stray = sorted(set(reference) - set(ROWS))
    if stray:
      print(f"warning: --reference rows not benchmarked here: {stray}")
  only = set(_ONLY.value or ROWS)
  load_before = os.getloadavg()
  peak = bench.peak_matmul_flops(_PEAK_N.value)
  print(f"peak matmul {peak / 1e9:.1f} GFLOP/s, load {load_before}", flush=True)
  rows = _gta_rows(only) + _synther_rows(only) + _agent_rows(only)
  rows.sort(key=lambda r: ROWS.index(r.name))
  times = _time_rows(rows, _ROUNDS.value)
  peak = max(peak, bench.peak_matmul_flops(_PEAK_N.value))
  load_after = os.getloadavg()
  out_rows = []
  print(f"\n{'row':26s} {'jaxaug ms':>11s} {'median ms':>11s} {'% peak':>7s} "
        f"{'ref ms':>10s} {'ref/jaxaug':>10s}")
  for r in rows:
    best, med = min(times[r.name]), statistics.median(times[r.name])
    share = r.flops_per_unit / best / peak if r.flops_per_unit else None
    ref = reference.get(r.name)
    ratio = ref / (1e3 * best) if ref else None
    out_rows.append({"name": r.name, "ms": 1e3 * best, "median_ms": 1e3 * med,
                     "all_ms": [1e3 * t for t in times[r.name]],
                     "gflop_per_unit": r.flops_per_unit / 1e9, "share_of_peak": share,
                     "reference_ms": ref, "reference_over_jaxaug": ratio, **r.info})
    print(f"{r.name:26s} {1e3 * best:11.3f} {1e3 * med:11.3f} "
          f"{'' if share is None else f'{100 * share:6.1f}%':>7s} "
          f"{'' if ref is None else f'{ref:10.3f}':>10s} "
          f"{'' if ratio is None else f'{ratio:10.2f}':>10s}")
  print(f"peak {peak / 1e9:.1f} GFLOP/s; load before {load_before}, after {load_after}")
  bench.write_json(_OUT.value, {"rows": out_rows, "peak_flops": peak, "rounds": _ROUNDS.value,
                                "load_before": list(load_before), "load_after": list(load_after),
                                "reference_file": _REFERENCE.value,
                                "machine": bench.machine_info()})
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
