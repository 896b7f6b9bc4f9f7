r"""DTQL throughput and what one-step inference buys (and what the max-Q trick costs).

  python experiments/bench_dtql.py --out=bench_dtql.json
  python experiments/bench_dtql.py --notrain --act_batches=1 --out=bench_dtql_act.json

* Training: full DTQL updates (critic + diffusion BC + trust-region policy) at batch 256,
  `updates_per_dispatch` per jitted lax.scan dispatch, Hopper-sized spaces (obs 11, act 3) by
  default; updates/s, ms/update, XLA FLOPs/update and the share of the measured peak.
* Acting latency at batch 1 and 256 (median of `act_repeats` rounds, blocked on; one-step rows
  at batch <= 16 average `act_inner` back-to-back calls per round). One-step and max-Q rows are
  timed twice, interleaved: api=params (`dtql.make_act_fn` on `dtql.act_params`, key folded in
  inside the jit, the evaluation path) and api=state (jitted `dtql.act` on the whole training
  state plus an eager `fold_in` per call, the former path):
  - `one_step`: num_candidates=1, one policy forward pass per state (not what the presets do);
  - `one_step_maxqN`: num_candidates=N (`--candidates`, default 1024 = every paper preset):
    N policy samples per state scored by the target twin Q, one drawn by softmax;
  - `diffusion_heunK`: the diffusion BC policy with K deterministic Heun steps (2K - 1 denoiser
    evaluations), the multi-step baseline one-step inference replaces.
  Every row records the network work per state: policy rows, critic rows (one per Q net) and
  denoiser evaluations. DTQL itself never runs the denoiser when acting.
"""

import os

import jax
import numpy as np
from absl import app, flags

from jaxaug import bench
from jaxaug.agents import dtql
from jaxaug.data.dataset import Transitions, sample_transitions
from jaxaug.train.loop import make_dispatch, seed_keys
from jaxaug.types import EnvSpec

_OBS = flags.DEFINE_integer("obs_dim", 11, "Observation size (Hopper: 11).")
_ACT = flags.DEFINE_integer("act_dim", 3, "Action size (Hopper: 3).")
_BATCH = flags.DEFINE_integer("batch_size", 256, "Training batch size.")
_K = flags.DEFINE_integer("updates_per_dispatch", 100, "Updates per jitted dispatch.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed training dispatches (median).")
_ACT_REPEATS = flags.DEFINE_integer("act_repeats", 20, "Timed acting rounds (median).")
_INNER = flags.DEFINE_integer("act_inner", 200, "Back-to-back one-step calls per timed round at "
                              "batch <= 16 (a single call is below the timer's resolution).")
_STEPS = flags.DEFINE_list("diffusion_steps", ["5", "50"], "Heun steps of the diffusion policy.")
_CANDIDATES = flags.DEFINE_integer("candidates", 1024, "Max-Q candidates (paper: 1024).")
_ACT_BATCHES = flags.DEFINE_list("act_batches", ["1", "256"], "Observation batch sizes.")
_OUT = flags.DEFINE_string("out", "bench_dtql.json", "JSON output path.")
_TRAIN = flags.DEFINE_bool("train", True, "Also time training (--notrain: acting only, on "
                           "freshly initialised paper-size networks).")


def make_data(n=100_000, obs_dim=11, act_dim=3):
  rng = np.random.default_rng(0)
  obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
  return Transitions(obs, np.tanh(rng.normal(size=(n, act_dim))).astype(np.float32),
                     rng.normal(size=n).astype(np.float32), obs, np.zeros(n, np.float32),
                     np.zeros(n, np.float32))


def make_train_call(spec, batch_size, k, config=None):
  """(zero-argument call running one dispatch of K full DTQL updates, FLOPs per update, the
  state holder {"s": state, "r": rng} the call advances)."""
  cfg = config if config is not None else dtql.get_config()  # paper networks; pretrain_steps 0
  data = jax.device_put(make_data(obs_dim=spec.obs_dim, act_dim=spec.act_dim))
  init_key, rng = seed_keys(0, 1)
  state = jax.jit(lambda kk: dtql.init(kk, spec, cfg))(init_key)
  dispatch = make_dispatch(dtql.update, sample_transitions, batch_size, k, None, 1)
  # XLA's cost analysis counts a lax.scan body once, whatever its length: take the FLOPs of
  # one update from a K = 1 dispatch.
  one = make_dispatch(dtql.update, sample_transitions, batch_size, 1, None, 1)
  flops = bench.compiled_flops(one, state, rng, data)
  carry = {"s": state, "r": rng}

  def run():
    carry["s"], carry["r"], m = dispatch(carry["s"], carry["r"], data)
    return m

  return run, flops, carry


def bench_training(spec, peak):
  run, flops, carry = make_train_call(spec, _BATCH.value, _K.value)
  t = bench.time_fn(run, repeats=_REPEATS.value, warmup=2)
  row = {"batch_size": _BATCH.value, "updates_per_dispatch": _K.value,
         "ms_per_update": 1e3 * t / _K.value, "updates_per_s": _K.value / t,
         "gflops_per_update": flops / 1e9,
         "share_of_peak": (flops * _K.value / t) / peak if flops else None}
  print(f"train: {row['ms_per_update']:.2f} ms/update ({row['updates_per_s']:.1f} updates/s, "
        f"{row['gflops_per_update']:.3f} GFLOP/update"
        + (f", {100 * row['share_of_peak']:.1f}% of peak)" if flops else ")"))
  return carry["s"], row


def _latency(fn, repeats, warmup, inner):
  """Median over `repeats` rounds of the mean time of `inner` back-to-back calls of fn()."""
  return bench.time_fn(lambda: [bench.block(fn()) for _ in range(inner)], repeats=repeats,
                       warmup=warmup) / inner


def make_act_call(state, api="params", act_state=None):
  """`call(obs, key)` -> host actions, as an environment loop acts (host observation in, host
  array out, a per-step key): api="params" is `dtql.make_act_fn` on `dtql.act_params` (the key
  folded in inside the jit); api="state" a jitted `dtql.act` on the whole training state after
  an eager `fold_in` (the former path)."""
  if api == "params":
    fn, params = dtql.make_act_fn(state.hp, True), dtql.act_params(state)
    return lambda o, k: np.asarray(fn(params, o, k, 7))
  act_state = act_state or jax.jit(lambda s, o, k: dtql.act(s, o, k, True))
  return lambda o, k: np.asarray(act_state(state, o, jax.random.fold_in(k, 7)))


def bench_acting(state_full):
  """Acting latency. Each one-step row is timed two ways, interleaved in this run:
  `api=params`: `dtql.make_act_fn(hp)(dtql.act_params(state), obs, key, step)`, the per-step
  key folded in inside the jit (what evaluation uses); `api=state`: the former path, a jitted
  `dtql.act` on the whole training state with an eager `jax.random.fold_in` per call. Both
  take a host (numpy) observation and return a host array, as an environment loop does."""
  hp = state_full.hp
  one_step = state_full.replace(hp=hp.replace(num_candidates=1))
  max_q = state_full.replace(hp=hp.replace(num_candidates=_CANDIDATES.value))
  n_cand = _CANDIDATES.value
  act_state = jax.jit(lambda s, o, k: dtql.act(s, o, k, True))
  # (name, api, {policy rows, critic rows (2 Q nets each), denoiser evals} per state,
  #  make(state, obs, key) -> zero-argument call)
  methods = []
  for name, st, work in (("one_step", one_step, {"candidates": 1, "policy_rows": 1,
                                                  "critic_rows": 0, "denoiser_evals": 0}),
                         (f"one_step_maxq{n_cand}", max_q,
                          {"candidates": n_cand, "policy_rows": n_cand,
                           "critic_rows": 2 * n_cand, "denoiser_evals": 0})):
    for api in ("params", "state"):
      methods.append((name, api, work, st, make_act_call(st, api, act_state)))
  for n in map(int, _STEPS.value):
    f = jax.jit(lambda s, o, k, n=n: dtql.sample_diffusion_policy(s, o, k, n))
    methods.append((f"diffusion_heun{n}", "state",
                    {"candidates": 0, "policy_rows": 0, "critic_rows": 0,
                     "denoiser_evals": 2 * n - 1}, one_step,
                    lambda o, k, f=f: np.asarray(f(one_step, o, k))))
  rows = []
  for b in map(int, _ACT_BATCHES.value):
    obs = np.asarray(jax.random.normal(jax.random.key(1), (b, hp.obs_dim)))
    for name, api, work, st, call in methods:
      key = jax.random.key(2)
      heavy = b * (st.hp.num_candidates if name.startswith("one_step_maxq") else 1) > 10_000
      cheap = name == "one_step" and b <= 16
      t = _latency(lambda: call(obs, key), repeats=3 if heavy else _ACT_REPEATS.value,
                   warmup=1 if heavy else 2, inner=_INNER.value if cheap else 1)
      rows.append({"method": name, "api": api, "batch": b, **work, "ms": 1e3 * t,
                   "actions_per_s": b / t})
      print(f"act batch={b:4d} {name:22s} api={api:6s} {1e3 * t:9.3f} ms "
            f"({b / t:11.1f} actions/s)")
  by = {(r["method"], r["api"], r["batch"]): r["ms"] for r in rows}
  for b in map(int, _ACT_BATCHES.value):
    for name in ("one_step", f"one_step_maxq{n_cand}"):
      print(f"batch {b}: {name} api=state / api=params = "
            f"{by[(name, 'state', b)] / by[(name, 'params', b)]:.2f}x")
    print(f"batch {b}: the presets' {n_cand}-candidate acting / one-step = "
          f"{by[(f'one_step_maxq{n_cand}', 'params', b)] / by[('one_step', 'params', b)]:.1f}x")
    for n in map(int, _STEPS.value):
      ratio = by[(f"diffusion_heun{n}", "state", b)] / by[("one_step", "params", b)]
      print(f"batch {b}: diffusion {n} steps / one-step = {ratio:.1f}x")
  return rows


def main(argv):
  del argv
  peak = bench.peak_matmul_flops()
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
  print(f"peak matmul: {peak / 1e9:.1f} GFLOP/s ({jax.default_backend()}), load avg {load}")
  spec = EnvSpec(_OBS.value, _ACT.value)
  if _TRAIN.value:
    state, train_row = bench_training(spec, peak)
  else:
    cfg = dtql.get_config()
    state = jax.jit(lambda k: dtql.init(k, spec, cfg))(jax.random.key(0))
    train_row = None
  act_rows = bench_acting(state)
  bench.write_json(_OUT.value, {"peak_flops": peak, "load_avg_1min": load,
                                "machine": bench.machine_info(), "obs_dim": spec.obs_dim,
                                "act_dim": spec.act_dim, "train": train_row, "act": act_rows})
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
