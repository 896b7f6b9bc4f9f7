r"""Benchmark the diffusion generators: training steps/s and generated transitions/s.

  python experiments/bench_diffusion.py --sizes=tiny,paper --out=/tmp/bench_diffusion.json

For each denoiser (GTA's MixerUnet and SynthER's residual MLP, tiny and paper size):
  * training: K AdamW updates per jitted call (lax.scan), steps/s; for the MixerUnet each
    implementation in --mixer_impls (matmul, the default; conv, the nn.Conv one), interleaved:
      python experiments/bench_diffusion.py --sizes=paper --only=gta_mixer_unet \
        --train_batch=64 --mixer_impls=matmul,conv --nogen
    and `--mixer_layers` times every layer of that network forward and forward+backward at its
    shape (batch --train_batch, width --gta_features), the per-layer profile:
      python experiments/bench_diffusion.py --mixer_layers --mixer_impls=matmul,conv \
        --train_batch=64 --gta_features=15 --repeats=2 --out=/tmp/mixer_layers.json
  * generation: GTA's partial noising (noising_ratio 0.5) + Heun with churn + classifier-free
    guidance (w = --guidance_scale) in both guidance modes, timed interleaved:
      official: guided Euler stage (conditional + unconditional in one 2B call), conditional Heun
        correction, condition dropout 0.25 kept while sampling (the paper presets);
      guide_correction: the guided estimate in both stages, no sampling dropout (`+fixes`);
    with the denoiser evaluations per window of each (official at N = 128, mu = 0.5: 191), and
    SynthER's full 128-step chain; generated transitions/s (a GTA window yields H - 1);
and the achieved FLOP/s as a share of the peak measured in the same run with a large fp32
matmul (best of a measurement before and after the runs). FLOPs come from XLA's cost analysis of
the compiled denoiser forward pass, times the number of calls (training: 3x forward).
"""

from __future__ import annotations

import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
from absl import app, flags

from jaxaug.diffusion import samplers
from jaxaug.diffusion import train as dtrain
from jaxaug.nets import denoisers

_SIZES = flags.DEFINE_list("sizes", ["tiny", "paper"], "tiny and/or paper")
_OUT = flags.DEFINE_string("out", "bench_diffusion.json", "JSON output file.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per measurement (best is kept).")
_TRAIN_K = flags.DEFINE_integer("train_k", 10, "Updates per jitted call.")
_GEN_BATCH = flags.DEFINE_integer("gen_batch", 0, "Generation batch (windows / rows); 0 = "
                                  "per-size default.")
_TRAIN_BATCH = flags.DEFINE_integer("train_batch", 0, "Training batch; 0 = per-size default.")
_ONLY = flags.DEFINE_list("only", [], "Subset of denoisers (gta_mixer_unet, synther_resmlp).")
_SAMPLER_STEPS = flags.DEFINE_integer("sampler_steps", 128, "EDM schedule length N.")
_GUIDANCE = flags.DEFINE_float("guidance_scale", 2.0, "GTA guidance scale w.")
_NOISING = flags.DEFINE_float("noising_ratio", 0.5, "GTA noising ratio mu.")
_TRAIN = flags.DEFINE_bool("train", True, "Also time training (off: generation only).")
_GEN = flags.DEFINE_bool("gen", True, "Also time generation (--nogen: training only).")
_GTA_D = flags.DEFINE_integer("gta_features", 0, "GTA window width D (0 = per-size default; "
                              "Hopper: 15 = 11 obs + 3 actions + 1 reward).")
_LAYERS = flags.DEFINE_bool("mixer_layers", False, "Per-layer profile of the paper MixerUnet "
                             "(forward, forward+backward) for each --mixer_impls, then exit.")
_IMPLS = flags.DEFINE_list("mixer_impls", ["matmul"], "MixerUnet implementations to train, timed "
                           "interleaved (matmul: the default; conv: the nn.Conv one).")

# GTA guidance modes: name -> (guide_correction, condition dropout while sampling).
GUIDANCE_MODES = {"official": (False, 0.25), "guide_correction": (True, 0.0)}

# name -> (net, net kwargs, x shape per item, cond_dim, train batch, gen batch)
SETUPS = {
    "tiny": {
        "gta_mixer_unet": ("mixer_unet", dict(denoisers.PRESETS["mixer_unet_tiny"], cond_dim=1),
                           (8, 15), 1, 64, 64),
        "synther_resmlp": ("resmlp", denoisers.PRESETS["resmlp_tiny"], (31,), 0, 64, 1000),
    },
    "paper": {
        "gta_mixer_unet": ("mixer_unet", dict(denoisers.PRESETS["mixer_unet_paper"], cond_dim=1),
                           (32, 24), 1, 256, 16),
        "synther_resmlp": ("resmlp", denoisers.PRESETS["resmlp_paper"], (42,), 0, 256, 1000),
    },
}


def _best_time(fn, repeats):
  jax.block_until_ready(fn())  # compile + warm up
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - t0)
  return best


def _flops(compiled) -> float:
  ca = compiled.cost_analysis()
  if isinstance(ca, (list, tuple)):
    ca = ca[0]
  return float(ca.get("flops", 0.0)) if ca else 0.0


def peak_flops(n: int = 4096, repeats: int = 5) -> float:
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
  f = jax.jit(jnp.matmul)
  return 2 * n**3 / _best_time(lambda: f(a, b), repeats)


def _interleaved_best(fns: dict, repeats: int) -> dict:
  """Best wall time of each function, calls alternated so that load shifts hit all alike."""
  for f in fns.values():
    jax.block_until_ready(f())  # compile + warm up
  best = {n: float("inf") for n in fns}
  for _ in range(repeats):
    for n, f in fns.items():
      t0 = time.perf_counter()
      jax.block_until_ready(f())
      best[n] = min(best[n], time.perf_counter() - t0)
  return best


def make_setup(net_name, net_kwargs, item_shape, cond_dim, seed=0):
  """Initialised learner state and helpers for one denoiser: dict(state, batch_of(key, n),
  item_flops = XLA FLOPs of one forward pass per item, den = the EMA denoiser, shape, cond_dim)."""
  c = dtrain.get_config()
  c.net = net_name
  c.net_kwargs = ml_collections.ConfigDict(dict(net_kwargs))
  c.cond_dropout = 0.25 if cond_dim else 0.0
  key = jax.random.PRNGKey(seed)

  def batch_of(kk, n):
    b = {"x": jax.random.normal(kk, (n,) + tuple(item_shape))}
    if cond_dim:
      b["cond"] = jax.random.normal(kk, (n, cond_dim))
    return b

  state = jax.jit(lambda kk: dtrain.init(kk, batch_of(kk, 2), c))(key)
  # FLOPs of one denoiser call per item, from XLA's cost analysis of the compiled forward pass.
  den = dtrain.denoiser(state)
  fwd = jax.jit(lambda xx, ss: den(xx, ss, None if not cond_dim else jnp.zeros(
      (xx.shape[0], cond_dim)), jnp.ones((xx.shape[0],))))
  probe = 8
  item_flops = _flops(fwd.lower(jnp.zeros((probe,) + tuple(item_shape)),
                                jnp.ones((probe,))).compile()) / probe
  return dict(state=state, batch_of=batch_of, item_flops=item_flops, den=den,
              shape=tuple(item_shape), cond_dim=cond_dim, key=key)


def make_train_call(setup, train_batch, k):
  """(zero-argument call of K AdamW updates in one jitted lax.scan, FLOPs per update counted as
  3x the forward pass: forward + backward, the usual estimate)."""
  multi = jax.jit(dtrain.make_multi_update(k, lambda kk: setup["batch_of"](kk, train_batch)))
  state, key = setup["state"], setup["key"]
  return (lambda: multi(state, key)[1]["loss"]), 3 * setup["item_flops"] * train_batch


def make_gen_calls(setup, gen_batch, sampler_steps, guidance_scale=2.0, noising_ratio=0.5):
  """{mode: (zero-argument generation call, denoiser evaluations per item)} and the number of
  transitions one call yields. GTA (cond_dim > 0): partial noising + guidance in both modes of
  GUIDANCE_MODES; SynthER: a full unguided chain from noise."""
  den, key, shape = setup["den"], setup["key"], setup["shape"]
  x = setup["batch_of"](key, gen_batch)
  calls = {}
  if setup["cond_dim"]:
    for mode, (gc, drop) in GUIDANCE_MODES.items():
      cfg = samplers.SamplerConfig(num_steps=sampler_steps, guide_correction=gc, cond_dropout=drop)
      g = jax.jit(functools.partial(
          lambda kk, cfg: samplers.from_partial_noise(den, kk, x["x"], noising_ratio, cfg,
                                                      cond=x["cond"],
                                                      guidance_scale=guidance_scale), cfg=cfg))
      calls[mode] = (functools.partial(g, key),
                     samplers.num_evaluations(cfg, noising_ratio, guidance_scale))
    return calls, gen_batch * (shape[0] - 1)  # a window yields H - 1 transitions
  cfg = samplers.SamplerConfig(num_steps=sampler_steps)
  g = jax.jit(lambda kk: samplers.heun_sample(den, kk, (gen_batch,) + shape, cfg))
  return {"unguided": (functools.partial(g, key), samplers.num_evaluations(cfg))}, gen_batch


def bench_one(name, net_name, net_kwargs, item_shape, cond_dim, train_batch, gen_batch, peak,
              repeats, k, sampler_steps, guidance_scale=2.0, noising_ratio=0.5, train=True,
              impls=("matmul",), gen=True):
  setup = make_setup(net_name, net_kwargs, item_shape, cond_dim)
  n_params = denoisers.count_params(setup["state"].params)
  item_flops = setup["item_flops"]
  res = {"params": n_params, "train_batch": train_batch, "item_shape": list(item_shape)}

  # Training. MixerUnet: each implementation in `impls`, timed interleaved (same parameters).
  if train:
    variants = impls if net_name == "mixer_unet" else (None,)
    calls = {}
    for impl in variants:
      st = setup if impl is None else make_setup(net_name, dict(net_kwargs, impl=impl),
                                                 item_shape, cond_dim)
      calls[impl or "default"], step_flops = make_train_call(st, train_batch, k)
    times = _interleaved_best(calls, repeats)
    first = next(iter(times))
    res["train_steps_per_s"] = k / times[first]
    res["train_flops_per_step"] = step_flops
    res["train_share_of_peak"] = step_flops * k / times[first] / peak
    if len(times) > 1 or first != "default":
      res["train_ms_per_step_by_impl"] = {n: 1e3 * t / k for n, t in times.items()}

  if not gen:
    print(f"{name:28s} params {n_params/1e6:7.3f}M | train {res['train_steps_per_s']:8.3f} "
          f"steps/s (batch {train_batch}, {100 * res['train_share_of_peak']:5.1f}% peak)")
    for impl, ms in res.get("train_ms_per_step_by_impl", {}).items():
      print(f"{'':28s} train impl={impl:8s} {ms:10.1f} ms/step", flush=True)
    return res
  # Generation.
  gens, transitions = make_gen_calls(setup, gen_batch, sampler_steps, guidance_scale,
                                     noising_ratio)
  evals = {m: e for m, (_, e) in gens.items()}
  times = _interleaved_best({m: c for m, (c, _) in gens.items()}, max(1, repeats - 1))
  res.update(gen_batch=gen_batch, gen_modes={})
  for mode, t in times.items():
    res["gen_modes"][mode] = dict(
        evaluations_per_item=evals[mode], seconds_per_call=t,
        transitions_per_s=transitions / t,
        share_of_peak=item_flops * gen_batch * evals[mode] / t / peak)
  first = next(iter(times))
  # Headline figures: the first mode (official for GTA).
  res.update(gen_evaluations=evals[first], gen_seconds_per_batch=times[first],
             gen_transitions_per_s=transitions / times[first],
             gen_share_of_peak=res["gen_modes"][first]["share_of_peak"])
  line = f"{name:28s} params {n_params/1e6:7.3f}M"
  if train:
    line += (f" | train {res['train_steps_per_s']:8.2f} steps/s (batch {train_batch}, "
             f"{100 * res['train_share_of_peak']:5.1f}% peak)")
  print(line, flush=True)
  for impl, ms in res.get("train_ms_per_step_by_impl", {}).items():
    print(f"{'':28s} train impl={impl:8s} {ms:10.1f} ms/step", flush=True)
  for mode, r in res["gen_modes"].items():
    print(f"{'':28s} generate [{mode:16s}] {r['evaluations_per_item']:4d} evals/item, "
          f"{r['seconds_per_call']:8.3f} s/call (batch {gen_batch}), "
          f"{r['transitions_per_s']:9.1f} transitions/s ({100 * r['share_of_peak']:5.1f}% peak)",
          flush=True)
  return res


def profile_mixer_layers(impl, batch=64, width=15, rounds=2):
  """Forward and forward+backward ms of every distinct layer of the paper MixerUnet (dim 16,
  mults 1,2,4,8; horizon 32) at its shape in the network, with how often it occurs."""
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  dn = denoisers
  emb = jnp.ones((batch, 32))

  class Conv(nn.Module):
    kind: str
    cout: int

    @nn.compact
    def __call__(self, x):
      c = x.shape[-1]
      if impl == "conv":
        if self.kind == "up":
          return nn.ConvTranspose(self.cout, (4, 3), strides=(2, 1), padding="SAME")(x)
        return nn.Conv(self.cout, (3, 3), strides=(2, 1) if self.kind == "down" else (1, 1),
                       padding=((1, 1), (1, 1)))(x)
      if self.kind == "up":
        return dn._conv_transpose_4x3(x, *dn._Weights((4, 3, c, self.cout))())  # pylint: disable=protected-access
      return dn._conv3x3(x, *dn._Weights((3, 3, c, self.cout))(),  # pylint: disable=protected-access
                         stride=2 if self.kind == "down" else 1)

  attn = dn.AttentionResidual if impl == "conv" else dn._AttentionResidualFactored  # pylint: disable=protected-access
  blk = dn.MixerBlock if impl == "conv" else dn._MixerBlockFused  # pylint: disable=protected-access
  # (name, module, (H, C_in), takes the embedding, occurrences): 16 MixerBlocks, 8 attentions
  # (after each stage's two blocks, down, middle and up), 3 down, 3 up and the head conv.
  layers = [("block H32 1->16", blk(16), (32, 1), 1, 1), ("block H32 16", blk(16), (32, 16), 1, 1),
            ("attn H32 C16", attn(), (32, 16), 0, 1), ("down H32 C16", Conv("down", 16), (32, 16), 0, 1),
            ("block H16 16->32", blk(32), (16, 16), 1, 1), ("block H16 32", blk(32), (16, 32), 1, 1),
            ("attn H16 C32", attn(), (16, 32), 0, 1), ("down H16 C32", Conv("down", 32), (16, 32), 0, 1),
            ("block H8 32->64", blk(64), (8, 32), 1, 1), ("block H8 64", blk(64), (8, 64), 1, 1),
            ("attn H8 C64", attn(), (8, 64), 0, 1), ("down H8 C64", Conv("down", 64), (8, 64), 0, 1),
            ("block H4 64->128", blk(128), (4, 64), 1, 1), ("block H4 128", blk(128), (4, 128), 1, 3),
            ("attn H4 C128", attn(), (4, 128), 0, 2),
            ("block H4 256->64", blk(64), (4, 256), 1, 1),
            ("block H4 64", blk(64), (4, 64), 1, 1), ("attn H4 C64", attn(), (4, 64), 0, 1),
            ("up H4 C64", Conv("up", 64), (4, 64), 0, 1),
            ("block H8 128->32", blk(32), (8, 128), 1, 1),
            ("block H8 32", blk(32), (8, 32), 1, 1), ("attn H8 C32", attn(), (8, 32), 0, 1),
            ("up H8 C32", Conv("up", 32), (8, 32), 0, 1),
            ("block H16 64->16", blk(16), (16, 64), 1, 1), ("block H16 16", blk(16), (16, 16), 1, 1),
            ("attn H16 C16", attn(), (16, 16), 0, 1), ("up H16 C16", Conv("up", 16), (16, 16), 0, 1),
            ("head conv H32 16", Conv("head", 16), (32, 16), 0, 1)]
  fns = {}
  for name, mod, (h, c), uses_emb, count in layers:
    x = jax.random.normal(jax.random.PRNGKey(0), (batch, h, width, c))
    args = (emb,) if uses_emb else ()
    p = mod.init(jax.random.PRNGKey(1), x, *args)
    fwd = jax.jit(lambda p, x, m=mod, a=args: m.apply(p, x, *a))
    grad = jax.jit(jax.grad(lambda p, x, m=mod, a=args: jnp.sum(m.apply(p, x, *a) ** 2),
                            argnums=(0, 1)))
    fns[name] = (functools.partial(fwd, p, x), functools.partial(grad, p, x), count)
  calls = {f"{n}|{k}": f for n, (fw, gr, _) in fns.items() for k, f in (("fwd", fw), ("bwd", gr))}
  best = _interleaved_best(calls, rounds)
  total = sum(c * best[f"{n}|bwd"] for n, (_, _, c) in fns.items())
  rows = {}
  for n, (_, _, c) in fns.items():
    rows[n] = {"count": c, "fwd_ms": 1e3 * best[f"{n}|fwd"], "fwd_bwd_ms": 1e3 * best[f"{n}|bwd"],
               "share": c * best[f"{n}|bwd"] / total}
    print(f"{impl:6s} {n:18s} x{c} fwd {rows[n]['fwd_ms']:8.1f} ms, fwd+bwd "
          f"{rows[n]['fwd_bwd_ms']:8.1f} ms ({100 * rows[n]['share']:4.1f}% of the sum)", flush=True)
  return rows


def main(argv):
  del argv
  if _LAYERS.value:
    out = {impl: profile_mixer_layers(impl, _TRAIN_BATCH.value or 64, _GTA_D.value or 15,
                                      _REPEATS.value) for impl in _IMPLS.value}
    out["load_average"] = list(os.getloadavg())
    with open(_OUT.value, "w") as f:
      json.dump(out, f, indent=2)
    print(f"load average {out['load_average']}; wrote {_OUT.value}")
    return
  peak = peak_flops()
  dev = jax.devices()[0]
  print(f"device {dev.platform} ({dev.device_kind}) x{jax.device_count()}; peak fp32 matmul "
        f"{peak / 1e9:.1f} GFLOP/s", flush=True)
  out = {"device": f"{dev.platform}:{dev.device_kind}", "device_count": jax.device_count(),
         "peak_flops": peak, "sampler_steps": _SAMPLER_STEPS.value,
         "guidance_scale": _GUIDANCE.value, "noising_ratio": _NOISING.value, "results": {}}
  for size in _SIZES.value:
    if size not in SETUPS:
      raise app.UsageError(f"--sizes: unknown size {size!r}; expected tiny, paper")
    for name, (net, kw, shape, cdim, tb, gb) in SETUPS[size].items():
      if _ONLY.value and name not in _ONLY.value:
        continue
      if net == "mixer_unet" and _GTA_D.value:
        shape = (shape[0], _GTA_D.value)
      out["results"][f"{size}/{name}"] = bench_one(
          f"{size}/{name}", net, kw, shape, cdim, _TRAIN_BATCH.value or tb, _GEN_BATCH.value or gb,
          peak,
          _REPEATS.value, _TRAIN_K.value, _SAMPLER_STEPS.value, _GUIDANCE.value, _NOISING.value,
          _TRAIN.value, tuple(_IMPLS.value), _GEN.value)
  # Contended machines under-report the peak: keep the best of a measurement before and after.
  peak_after = peak_flops()
  out["peak_flops_after"] = peak_after
  out["load_average"] = list(os.getloadavg())
  if peak_after > peak:
    for r in out["results"].values():
      for k in ("train_share_of_peak", "gen_share_of_peak"):
        if k in r:
          r[k] *= peak / peak_after
      for m in r.get("gen_modes", {}).values():
        m["share_of_peak"] *= peak / peak_after
    out["peak_flops"] = peak_after
  print(f"peak after: {peak_after / 1e9:.1f} GFLOP/s; shares use the larger peak; load average "
        f"{out['load_average']}")
  os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  tmp = _OUT.value + ".tmp"
  with open(tmp, "w") as f:
    json.dump(out, f, indent=2)
  os.replace(tmp, _OUT.value)
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
