r"""Staged vs composed GTA augmentation for TD3+BC, in one run (docs/augmentation.md).

  python experiments/bench_augment.py --out=bench_augment.json
  python experiments/bench_augment.py --generator=runs/gta/hmr --num_steps=2000 --out=...
  python experiments/bench_augment.py --generator_size=tiny,paper --out=...   # both sizes

`--generator_size`: `tiny` (gta:tiny's 2-level MixerUnet, H = 8, 32-step sampler) and/or `paper`
(the GTA paper preset's generator: gta:paper's MixerUnet, dim 16 x (1, 2, 4, 8), H = 32, its
128-step sampler at mu = 0.5, guidance 2.0; trained for --paper_gen_steps steps at batch
--paper_gen_batch only, since the timing does not depend on the weights). Each size runs the
whole comparison and lands under "sizes" in the JSON. On a CPU keep the paper row small:
`--paper_round_size`, `--paper_num_steps` and `--paper_every` replace the round size, updates
and round period for it (e.g. 4 windows, 100 updates, a round every 50).

Both arms produce and consume the same number of generated transitions, N = rounds x rows per
round, and run the same number of TD3+BC updates:
  * staged: pipeline.generate (chunks pulled to the host, filtered, written as npz), then
    train_offline with augment.path (loaded, normalised on the host, put on the device);
  * composed: train_offline with augment.source=generator:WORKDIR (rounds on device every
    `every` updates into a ring buffer), for both round placements (separate jitted round
    between dispatches, and lax.cond inside the scan).
Reported per arm: end-to-end wall seconds (compilation included), steady-state updates/s (a
K-update dispatch timed after compilation; composed: with its round amortised), host transfer
bytes per update (staged: the generated arrays fetched to the host and put back, from their
sizes; composed: none in the steady state, which tests/test_composed_augment.py checks with
transfer_guard('disallow')), and generation throughput in windows/s with denoiser evaluations
per window: network calls (the official code's count: a guided call on the 2B batch is one call)
and per-item passes (jaxaug's count, samplers.num_evaluations: a guided call is two passes).
Without --generator a tiny GTA generator is trained first (its training time is not counted).
Timings on a shared machine are only comparable within one run.
"""

import copy
import dataclasses
import os
import tempfile
import time

import jax
import numpy as np
from absl import app, flags

from jaxaug import agents, bench, configs_io
from jaxaug.augment import composed, gta, pipeline
from jaxaug.data import loaders
from jaxaug.diffusion import samplers
from jaxaug.train import config_io, loop, offline
from jaxaug.train import mesh as mesh_lib

_GEN = flags.DEFINE_string("generator", "", "A trained GTA workdir for the one size given; '' = "
                           "train one now (gta:tiny or gta:paper, see --generator_size).")
_SIZES = flags.DEFINE_list("generator_size", ["tiny"], "tiny and/or paper (see module doc).")
_PAPER_GEN_STEPS = flags.DEFINE_integer("paper_gen_steps", 2, "Training steps of the paper-size "
                                        "generator (not timed; its cost is the compile).")
_PAPER_BATCH = flags.DEFINE_integer("paper_gen_batch", 8, "Training batch of the paper-size "
                                    "generator (its few training steps are not timed).")
_PAPER_ROUND = flags.DEFINE_integer("paper_round_size", 0, "Windows per round for the paper "
                                    "size; 0 = --round_size.")
_PAPER_STEPS = flags.DEFINE_integer("paper_num_steps", 0, "Updates per arm for the paper size; "
                                    "0 = --num_steps.")
_PAPER_EVERY = flags.DEFINE_integer("paper_every", 0, "Round period for the paper size; 0 = "
                                    "--every.")
_PLACEMENTS = flags.DEFINE_list("placements", ["dispatch", "scan"], "Composed round placements "
                                "to run (each compiles its own round; one keeps a CPU paper row "
                                "short).")
_PAPER_SAMPLER = flags.DEFINE_integer("paper_sampler_steps", 0, "Sampler steps of the paper "
                                      "size; 0 = the paper's 128.")
_GEN_STEPS = flags.DEFINE_integer("gen_train_steps", 100, "Training steps of the tiny generator.")
_SAMPLER_STEPS = flags.DEFINE_integer("sampler_steps", 32, "Sampler steps of the tiny generator.")
_NUM_STEPS = flags.DEFINE_integer("num_steps", 400, "TD3+BC updates per arm.")
_K = flags.DEFINE_integer("updates_per_dispatch", 50, "Updates per dispatch.")
_EVERY = flags.DEFINE_integer("every", 100, "Updates between composed generation rounds.")
_ROUND = flags.DEFINE_integer("round_size", 64, "Windows per round / per staged chunk.")
_BATCH = flags.DEFINE_integer("batch_size", 256, "TD3+BC batch size.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls for the steady-state figures.")
_OUT = flags.DEFINE_string("out", "bench_augment.json", "JSON output path.")
# Score comparison (optional): real only vs staged (N generated once) vs composed (a buffer of
# N / 4 refreshed so that the run generates N in total), num_seeds seeds in one vmapped program.
_SCORE_SEEDS = flags.DEFINE_integer("score_seeds", 0, "Seeds of the score comparison; 0 = skip.")
_SCORE_STEPS = flags.DEFINE_integer("score_steps", 2000, "Updates per arm (score comparison).")
_SCORE_N = flags.DEFINE_integer("score_generated", 20_000, "Generated transitions per arm.")
_SCORE_EPISODES = flags.DEFINE_integer("score_eval_episodes", 10, "Evaluation episodes per seed.")
_SKIP_TIMING = flags.DEFINE_bool("skip_timing", False, "Only the score comparison.")
_ONLY_PLACEMENTS = flags.DEFINE_integer(
    "only_placements", 0, "Only the steady state of the two round placements, interleaved "
    "(dispatch, scan, dispatch, scan, ...) this many times each; 0 = the full benchmark.")


@dataclasses.dataclass(frozen=True)
class Sizes:
  """Run sizes of one comparison (the flags, or the paper-size overrides)."""
  num_steps: int
  every: int
  round_size: int


def _sizes(size: str) -> Sizes:
  if size == "paper":
    return Sizes(_PAPER_STEPS.value or _NUM_STEPS.value, _PAPER_EVERY.value or _EVERY.value,
                 _PAPER_ROUND.value or _ROUND.value)
  return Sizes(_NUM_STEPS.value, _EVERY.value, _ROUND.value)


def _train_generator(workdir: str, size: str = "tiny") -> str:
  """gta:tiny trained --gen_train_steps steps, or gta:paper's network (the paper preset's
  MixerUnet, window and sampler) trained a few steps at a small batch: only its cost matters."""
  if size not in ("tiny", "paper"):
    raise ValueError(f"--generator_size: expected tiny and/or paper, got {size!r}")
  g = configs_io.load_config_file(f"gta:{size}")
  steps = _GEN_STEPS.value if size == "tiny" else _PAPER_GEN_STEPS.value
  g.num_steps = steps
  g.updates_per_dispatch = min(50, steps)
  g.checkpoint_every = steps
  g.log_every = g.updates_per_dispatch
  if size == "tiny":
    g.sampler.num_steps = _SAMPLER_STEPS.value
  else:
    g.batch_size = _PAPER_BATCH.value
    g.diffusion.lr_schedule = "constant"  # a few steps: the restart period is irrelevant
    if _PAPER_SAMPLER.value:
      g.sampler.num_steps = _PAPER_SAMPLER.value
  pipeline.train_generator(g, workdir)
  return workdir


def _agent_config(gen_dir: str, rounds: int, sz: Sizes | None = None):
  sz = sz or _sizes("tiny")
  c = configs_io.load_config_file("td3bc:tiny")
  c.num_steps = sz.num_steps
  c.updates_per_dispatch = _K.value
  c.log_every = sz.num_steps
  c.eval_episodes = 0
  c.checkpoint_every = 0
  c.batch_size = _BATCH.value
  g = config_io.load_config(gen_dir)
  rows = sz.round_size * (int(g.gta.horizon) - 1)
  c.augment.source = f"generator:{gen_dir}"
  c.augment.every = sz.every
  c.augment.round_size = sz.round_size
  # The buffer holds what the rounds make; no warm start: every round is one of the N.
  c.augment.capacity = rows * rounds
  c.augment.warm_start = False
  return c, rows


def _steady_state(c) -> dict:
  """Seconds per K-update dispatch after compilation (composed: + its rounds amortised) and
  seconds per generation round."""
  ds = loaders.load_dataset(c.dataset)
  _, spec = offline.resolve_env(c, ds)
  mesh = mesh_lib.make_data_mesh()
  data, sample_fn, _, _, comp = offline.prepare_run(c, ds, spec, mesh)
  agent = agents.get_agent("td3bc")
  init = lambda k: agent.init(k, spec, c.agent)
  update = agent.update
  before = None
  if comp is not None:
    init, update, before = comp.wrap_init(init), comp.wrap_update(update), comp.hooks.before_update
  k_init, rng = loop.seed_keys(0, 1)
  state = jax.jit(init)(k_init)
  state, rng, data = mesh_lib.replicate((state, rng, data), mesh)
  k = int(c.updates_per_dispatch)
  dispatch = loop.make_dispatch(update, sample_fn, int(c.batch_size), k, mesh,
                                before_update=before)
  carry = {"s": state, "r": rng, "step": 0}

  def run():
    if comp is not None:
      carry["s"] = comp.hooks.between_dispatches(carry["s"], data, carry["step"])
    carry["s"], carry["r"], m = dispatch(carry["s"], carry["r"], data)
    carry["step"] += k
    return m

  # Time whole round periods (every / K dispatches) so that each measurement holds one round.
  per = max(1, int(c.augment.every) // k) if comp is not None else 1
  t = bench.time_fn(lambda: [run() for _ in range(per)], repeats=_REPEATS.value,
                    warmup=per + 1) / per
  out = {"dispatch_s": t, "updates_per_s": k / t}
  if comp is not None:
    s = comp.settings
    rnd = jax.jit(lambda a, g: composed.generation_round(s, a, g))
    aug = {"a": carry["s"].aug}
    tr = bench.time_fn(lambda: aug.__setitem__("a", rnd(aug["a"], data["gen"])) or aug["a"],
                       repeats=_REPEATS.value)
    out.update(round_s=tr, windows_per_s=s.round_size / tr)
  return out


def _scores(gen_dir: str, tmp: str) -> dict:
  """Final normalised scores of TD3+BC: real only, staged GTA, composed GTA (refreshed)."""
  g = config_io.load_config(gen_dir)
  rows = _ROUND.value * (int(g.gta.horizon) - 1)
  n, steps, k = _SCORE_N.value, _SCORE_STEPS.value, _K.value
  c = configs_io.load_config_file("td3bc:tiny")
  c.num_steps, c.updates_per_dispatch, c.log_every = steps, k, steps
  c.eval_every, c.eval_episodes, c.checkpoint_every = 0, _SCORE_EPISODES.value, 0
  c.batch_size, c.num_seeds = _BATCH.value, _SCORE_SEEDS.value
  arms = {}
  cfgs = {"real": copy.deepcopy(c)}
  gcfg = copy.deepcopy(g)
  gcfg.num_transitions, gcfg.windows_per_chunk = n, _ROUND.value
  out_npz = os.path.join(tmp, "score_gen.npz")
  pipeline.generate(gcfg, gen_dir, out_npz, log=lambda *_: None)
  st = copy.deepcopy(c)
  st.augment.path, st.augment.mode = f"npz:{out_npz}", "concat"
  cfgs["staged"] = st
  co = copy.deepcopy(c)
  # About 3/4 of N from refresh rounds (every a multiple of K), the rest from the warm fill.
  refresh = max(1, (3 * n // 4) // rows)
  every = max(k, steps // (refresh + 1) // k * k)
  rounds = len(range(every, steps, every))
  cap = max(rows, (n - rounds * rows) // rows * rows)
  co.augment.source, co.augment.mode = f"generator:{gen_dir}", "concat"
  co.augment.capacity, co.augment.round_size, co.augment.every = cap, _ROUND.value, every
  cfgs["composed"] = co
  for name, cc in cfgs.items():
    t0 = time.perf_counter()
    out = offline.train_offline(cc, None)
    seeds = [out[f"eval/normalized_score_seed{i}"] for i in range(cc.num_seeds)] \
        if cc.num_seeds > 1 else [out["eval/normalized_score"]]
    arms[name] = {"score_mean": float(np.mean(seeds)), "score_std": float(np.std(seeds)),
                  "seeds": [float(x) for x in seeds], "wall_s": time.perf_counter() - t0,
                  "generated": out.get("augment", {}).get("generated_transitions",
                                                          0 if name == "real" else n)}
    if name == "composed":
      arms[name].update(capacity=cap, every=every)
    print(name, arms[name])
  return arms


def main(argv):
  del argv
  tmp = tempfile.mkdtemp(prefix="bench_augment_")
  if _ONLY_PLACEMENTS.value or _SKIP_TIMING.value:
    gen_dir = _GEN.value or _train_generator(os.path.join(tmp, "gta"), _SIZES.value[0])
  if _ONLY_PLACEMENTS.value:
    c, _ = _agent_config(gen_dir, len(range(0, _NUM_STEPS.value, _EVERY.value)))
    runs = []
    for i in range(_ONLY_PLACEMENTS.value):
      for placement in ("dispatch", "scan"):
        cc = copy.deepcopy(c)
        cc.augment.round_placement = placement
        r = dict(_steady_state(cc), placement=placement, repeat=i, loadavg=os.getloadavg())
        print(r)
        runs.append(r)
    bench.write_json(_OUT.value, {"machine": bench.machine_info(), "placements": runs})
    print(f"wrote {_OUT.value}")
    return
  if _SKIP_TIMING.value:
    result = {"machine": bench.machine_info(), "loadavg": os.getloadavg(),
              "scores": _scores(gen_dir, tmp), "loadavg_end": os.getloadavg()}
    bench.write_json(_OUT.value, result)
    print(f"wrote {_OUT.value}")
    return
  if _GEN.value and len(_SIZES.value) != 1:
    raise ValueError("--generator names one trained workdir: give one --generator_size with it")
  result = {"machine": bench.machine_info(), "loadavg": os.getloadavg(), "sizes": {}}
  for size in _SIZES.value:
    gen_dir = _GEN.value or _train_generator(os.path.join(tmp, f"gta_{size}"), size)
    result["sizes"][size] = {"loadavg": os.getloadavg()}
    _timing(gen_dir, tmp, _sizes(size), result, result["sizes"][size])
  if _SCORE_SEEDS.value:
    result["scores"] = _scores(_GEN.value or os.path.join(tmp, f"gta_{_SIZES.value[0]}"), tmp)
  result["loadavg_end"] = os.getloadavg()
  bench.write_json(_OUT.value, result)
  print(f"wrote {_OUT.value}")


def _timing(gen_dir: str, tmp: str, sz: Sizes, result: dict, res: dict) -> None:
  """Staged vs composed (both placements) at one generator size; fills `res` (written into
  `result` after every arm, so partial results survive a timeout)."""
  rounds = len(range(0, sz.num_steps, sz.every))
  c, rows = _agent_config(gen_dir, rounds, sz)
  n_gen = rows * rounds
  g = config_io.load_config(gen_dir)
  scfg = samplers.sampler_config(g)
  mu, w = float(g.gta.noising_ratio), float(g.gta.guidance_scale)
  steps = scfg.num_steps - samplers.partial_start_index(scfg.num_steps, mu)
  evals = {"network_calls": 2 * steps - 1 if steps > 0 else 0,
           "item_passes": samplers.num_evaluations(scfg, mu, w)}
  model = composed.load_generator(c, loaders.load_dataset(c.dataset))[1]
  n_params = max(int(sum(np.size(x) for x in jax.tree.leaves(p)))
                 for p in (model.params, model.ema_params))  # the frozen copy keeps one of them
  print(f"[{os.path.basename(gen_dir)}] N = {n_gen} generated transitions ({rounds} rounds x "
        f"{rows}), {sz.num_steps} updates, batch {_BATCH.value}, H = {int(g.gta.horizon)}, "
        f"{scfg.num_steps} sampler steps; denoiser evaluations per window: {evals}")
  res.update({"generator": gen_dir, "generator_params": n_params,
              "horizon": int(g.gta.horizon), "sampler_steps": int(scfg.num_steps),
              "round_size": sz.round_size, "every": sz.every,
              "generated_transitions": n_gen, "num_steps": sz.num_steps,
              "evaluations_per_window": evals, "arms": {}})

  # Staged: generate N on the host path, then train on real + generated.
  gcfg = copy.deepcopy(g)
  gcfg.num_transitions = n_gen
  gcfg.windows_per_chunk = sz.round_size
  out_npz = os.path.join(tmp, f"gen_{os.path.basename(gen_dir)}.npz")
  t0 = time.perf_counter()
  gen_ds = pipeline.generate(gcfg, gen_dir, out_npz, log=lambda *_: None)
  t_gen = time.perf_counter() - t0
  staged = copy.deepcopy(c)
  staged.augment.source = ""
  staged.augment.path = f"npz:{out_npz}"
  staged.augment.mode = "concat"
  t0 = time.perf_counter()
  offline.train_offline(staged, None)
  t_train = time.perf_counter() - t0
  row_bytes = sum(getattr(gen_ds, f).itemsize * int(np.prod(getattr(gen_ds, f).shape[1:]))
                  for f in ("observations", "actions", "rewards", "next_observations",
                            "terminals", "timeouts"))
  ss = _steady_state(staged)
  # Steady-state staged chunk: generate on device and fetch the valid rows to the host.
  ds = loaders.load_dataset(c.dataset)
  gconfig, model, source, _ = composed.load_generator(c, ds)
  gen = dataclasses.replace(gta.generation_config(gconfig), windows_per_chunk=sz.round_size)
  chunk_fn = gta.make_chunk_fn(model, source, gen, gta.window_probabilities(source, gconfig))
  t_chunk = bench.time_fn(lambda: chunk_fn(jax.random.key(1)), repeats=_REPEATS.value)
  res["arms"]["staged"] = {
      "wall_s": t_gen + t_train, "generation_s": t_gen, "train_s": t_train,
      "chunk_s": t_chunk, "windows_per_s": sz.round_size / t_chunk,
      # fetched to the host once, and put on the device again by the agent stage
      "host_transfer_bytes_per_update": 2 * n_gen * row_bytes / sz.num_steps, **ss}
  print("staged", res["arms"]["staged"])
  bench.write_json(_OUT.value, result)

  for placement in _PLACEMENTS.value:
    cc = copy.deepcopy(c)
    cc.augment.round_placement = placement
    t0 = time.perf_counter()
    out = offline.train_offline(cc, None)
    t = time.perf_counter() - t0
    assert out["augment"]["generated_transitions"] == n_gen, out["augment"]
    ss = _steady_state(cc)
    res["arms"][f"composed_{placement}"] = {
        "wall_s": t, "host_transfer_bytes_per_update": 0.0, **ss}
    print(f"composed_{placement}", res["arms"][f"composed_{placement}"])
    bench.write_json(_OUT.value, result)  # partial results survive a timeout


if __name__ == "__main__":
  app.run(main)
