r"""Profile of GTA's MixerUnet training step on XLA:CPU (issue 17): where the time goes.

  python experiments/profile_mixer_unet.py --out=/tmp/profile_mixer_unet.json
  python experiments/profile_mixer_unet.py --parts=census,trace --steps=3
  python experiments/profile_mixer_unet.py --parts=pieces --batch=64 --features=15

The paper network (dim 16, mults 1,2,4,8, linear attention), windows H 32 x D --features
(Hopper: 15), batch --batch, one AdamW step + EMA per jitted call (`diffusion.train.update`).
Three parts (--parts):

  census  the optimized HLO of the compiled step (`jit(...).lower(...).compile().as_text()`):
          top-level operations by kind (dots, library (YNN) dot fusions, transposes / copies,
          reduction fusions, elementwise fusions, other), with the floats each kind writes, and
          a check that no float64 value appears.
  trace   a `jax.profiler` trace of --steps steps: XLA:CPU records one event per executed
          top-level operation (thunk), named after the HLO instruction. Their durations are
          summed per kind and per network part (read from each instruction's `op_name`
          metadata: the flax module path; backward when inside `transpose(jvp(...))`), next to
          the step's wall time (operations of the two pool threads may overlap, so the sum can
          exceed the wall time).
  pieces  forward+backward time of each piece of a MixerBlock at every distinct block shape of
          the network, in the matmul implementation's single (B, H, D*C) layout (LayerNorm over
          D*C, feature MLP D*C -> 4C -> D*C, LayerNorm over H, temporal MLP H -> 4H -> H as
          batched matmuls), the former layout's transposes to (B, D, C, H) and back, the exact
          GELU on the temporal hidden activations as erf (used), erfc (jax.nn.gelu) and the
          tanh approximation (for its cost), and the whole block next to the former one
          (`MixerBlock`, impl="conv"); interleaved rounds, weighted by block occurrences.

The matmul peak (a 4096^3 fp32 matmul) is measured in the same process, and the achieved FLOP
rate of the dots (XLA's FLOP count per dot / traced time) is reported against it. Results are
printed as tables and written as JSON (--out). XLA flags can be tried without code changes by
setting XLA_FLAGS for the process.
"""

from __future__ import annotations

import collections
import functools
import glob
import os
import re
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxaug import bench  # noqa: E402
from jaxaug.diffusion import train as dtrain  # noqa: E402
from jaxaug.nets import denoisers  # noqa: E402

_PARTS = flags.DEFINE_list("parts", ["census", "trace", "pieces"], "census, trace, pieces.")
_BATCH = flags.DEFINE_integer("batch", 64, "Training batch.")
_FEATURES = flags.DEFINE_integer("features", 15, "Window width D (Hopper: 11 + 3 + 1).")
_HORIZON = flags.DEFINE_integer("horizon", 32, "Window length H.")
_STEPS = flags.DEFINE_integer("steps", 3, "Traced steps (after a warm-up step).")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Interleaved rounds of the piece timings.")
_IMPL = flags.DEFINE_string("impl", "matmul", "MixerUnet implementation: matmul | conv.")
_OUT = flags.DEFINE_string("out", "profile_mixer_unet.json", "JSON output path.")
_PEAK_N = flags.DEFINE_integer("peak_n", 4096, "Size of the square matmul measuring the peak.")
_CACHE = flags.DEFINE_string("cache_dir", None, "Persistent compilation cache directory (reruns "
                             "skip the ~2 min compile of the step).")


# --- the training step ---------------------------------------------------------------------------

def make_step(batch, horizon, features, impl):
  """(jitted update, state, batch of windows, key): the step `bench_diffusion` times."""
  import ml_collections  # pylint: disable=import-outside-toplevel
  c = dtrain.get_config()
  c.net = "mixer_unet"
  c.net_kwargs = ml_collections.ConfigDict(dict(denoisers.PRESETS["mixer_unet_paper"],
                                                cond_dim=1, impl=impl))
  c.cond_dropout = 0.25
  key = jax.random.key(0)
  kx, kc = jax.random.split(key)
  data = {"x": jax.random.normal(kx, (batch, horizon, features)),
          "cond": jax.random.normal(kc, (batch, 1))}
  state = jax.jit(lambda k: dtrain.init(k, jax.tree.map(lambda v: v[:2], data), c))(key)
  step = jax.jit(dtrain.update)
  return step, state, data, key


# --- optimized-HLO census ------------------------------------------------------------------------

_INSTR = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (.+?) ([a-z][\w\-]*)\((.*)$")
_COMP = re.compile(r"^(?:ENTRY )?%([\w.\-]+) .*\{\s*$")
_SHAPE = re.compile(r"\b(pred|s8|s16|s32|s64|u8|u32|u64|bf16|f16|f32|f64)\[([\d,]*)\]")
_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "bf16": 2, "f16": 2, "s32": 4, "u32": 4,
          "f32": 4, "s64": 8, "u64": 8, "f64": 8}


def _elements(shape_text):
  """Total elements of all arrays in an HLO shape string (tuples summed)."""
  n = 0
  for _, dims in _SHAPE.findall(shape_text):
    n += int(np.prod([int(d) for d in dims.split(",") if d])) if dims else 1
  return n


def parse_hlo(text):
  """{computation: [instruction dict]} of an HLO module's text; each instruction has name,
  opcode, shape (text), rest (operands and attributes), calls (called computations)."""
  comps, cur = {}, None
  for line in text.splitlines():
    m = _COMP.match(line)  # headers start in column 0, instructions are indented
    if m:
      cur = comps.setdefault(m.group(1), [])
      continue
    if cur is None:
      continue
    if line.startswith("}"):
      cur = None
      continue
    m = _INSTR.match(line)
    if m:
      name, shape, opcode, rest = m.groups()
      calls = re.findall(r"(?:calls|body|condition|to_apply|branch_computations)=\{?%?([\w.\-]+)",
                         rest)
      op_name = re.search(r'op_name="([^"]*)"', rest)
      cur.append(dict(name=name, shape=shape, opcode=opcode, rest=rest, calls=calls,
                      op_name=op_name.group(1) if op_name else ""))
  return comps


def classify(instr, comps):
  """Kind of a top-level instruction: dot, dot_fusion (a dot inside a fusion: YNN or Eigen
  output fusion), transpose_copy, reduce_fusion, elementwise_fusion, or other."""
  op = instr["opcode"]
  if op == "dot":
    return "dot"
  if op in ("transpose", "copy"):
    return "transpose_copy"
  if op == "fusion":
    body = comps.get(instr["calls"][0], []) if instr["calls"] else []
    inner = {i["opcode"] for i in body}
    if "dot" in inner or "convolution" in inner:
      return "dot_fusion"
    if "reduce" in inner:
      return "reduce_fusion"
    if inner <= {"parameter", "transpose", "copy", "bitcast", "reshape"}:
      return "transpose_copy"
    return "elementwise_fusion"
  if op == "convolution":
    return "convolution"
  return "other"


def _top_level(comps):
  """Instructions XLA:CPU executes as thunks: those of the computations not called as a fusion
  body or reducer (the entry, while bodies and conditions, conditional branches)."""
  fused = set()
  for instrs in comps.values():
    for i in instrs:
      if i["opcode"] in ("fusion", "reduce", "reduce-window", "scatter", "sort", "map",
                         "select-and-scatter", "all-reduce"):
        fused.update(i["calls"])
  return [i for c, instrs in comps.items() if c not in fused for i in instrs
          if i["opcode"] not in ("parameter", "tuple", "get-tuple-element", "constant",
                                 "bitcast", "while", "conditional", "call")]


def part_of(op_name):
  """(network part, 'bwd' or 'fwd') from an op_name such as
  'jit(update)/transpose(jvp(MixerUnet))/MixerBlock_3/FeedForward_1/Dense_0/dot_general'."""
  bwd = "transpose(" in op_name
  if "MixerBlock" in op_name:
    # flax submodules (MixerBlock) or named scopes (the matmul implementation's block)
    if re.search("FeedForward_0|feature_mlp", op_name):
      part = "block: feature MLP"
    elif re.search("FeedForward_1|temporal_mlp", op_name):
      part = "block: temporal MLP"
    elif re.search("LayerNorm_0|feature_norm", op_name):
      part = "block: feature LayerNorm"
    elif re.search("LayerNorm_1|temporal_norm", op_name):
      part = "block: temporal LayerNorm"
    elif re.search(r"MixerBlock_\d+/transpose", op_name):
      part = "block: layout transposes"
    else:
      part = "block: 1x1 convs, emb, sums"
  elif "AttentionResidual" in op_name:
    part = "linear attention"
  elif re.search(r"Conv(Transpose)?_\d|_conv|pad|concatenate", op_name) and "MixerUnet" in op_name:
    part = "convs (down, up, head)"
  elif "MixerUnet" in op_name:
    part = "embedding, GroupNorm head, skips"
  elif "adam" in op_name.lower() or "optax" in op_name.lower() or "scale_by" in op_name:
    part = "AdamW"
  elif "ema" in op_name.lower() or "cond" in op_name:
    part = "EMA"
  else:
    part = "loss, preconditioning, AdamW, EMA, other"
  return part, ("bwd" if bwd else "fwd")


def census(compiled_text):
  comps = parse_hlo(compiled_text)
  top = _top_level(comps)
  kinds = collections.defaultdict(lambda: {"count": 0, "floats_written": 0})
  for i in top:
    k = classify(i, comps)
    kinds[k]["count"] += 1
    kinds[k]["floats_written"] += _elements(i["shape"])
  f64 = [i["name"] for instrs in comps.values() for i in instrs if "f64[" in i["shape"]]
  return dict(kinds=dict(kinds), top_level=len(top), f64_instructions=f64[:20],
              num_f64=len(f64)), comps, top


# --- trace ---------------------------------------------------------------------------------------

def trace_step(step, args, steps, comps, top):
  """Durations of the executed top-level operations over `steps` steps, per kind and part."""
  from jax.profiler import ProfileData  # pylint: disable=import-outside-toplevel
  by_name = {i["name"]: i for i in top}
  d = tempfile.mkdtemp(prefix="profile_mixer_unet_")
  bench.block(step(*args))
  walls = []
  jax.profiler.start_trace(d)
  print(f"tracing {steps} steps into {d}", flush=True)
  for _ in range(steps):
    t0 = time.perf_counter()
    bench.block(step(*args))
    walls.append(time.perf_counter() - t0)
  jax.profiler.stop_trace()
  (path,) = glob.glob(os.path.join(d, "**", "*.xplane.pb"), recursive=True)
  per_op = collections.defaultdict(float)
  unmatched = collections.defaultdict(float)
  for plane in ProfileData.from_file(path).planes:
    for line in plane.lines:
      if line.name == "python":
        continue
      for e in line.events:
        if e.name in by_name:
          per_op[e.name] += e.duration_ns * 1e-6 / steps
        elif not e.name.startswith(("ThreadpoolListener", "ThunkExecutor")):
          unmatched[e.name] += e.duration_ns * 1e-6 / steps
  kinds = collections.defaultdict(lambda: {"ms": 0.0, "count": 0, "gflop": 0.0})
  parts = collections.defaultdict(lambda: {"fwd_ms": 0.0, "bwd_ms": 0.0})
  part_kinds = collections.defaultdict(lambda: collections.defaultdict(float))
  flops = _dot_flops(comps, top)
  for name, ms in per_op.items():
    i = by_name[name]
    k = classify(i, comps)
    kinds[k]["ms"] += ms
    kinds[k]["count"] += 1
    kinds[k]["gflop"] += flops.get(name, 0.0) / 1e9
    p, direction = part_of(i["op_name"])
    parts[p][f"{direction}_ms"] += ms
    part_kinds[p][k] += ms
  top_ops = sorted(per_op.items(), key=lambda kv: -kv[1])[:25]
  return dict(wall_ms=[1e3 * w for w in walls], op_ms_sum=sum(per_op.values()),
              kinds=dict(kinds), parts=dict(parts),
              part_kinds={p: dict(v) for p, v in part_kinds.items()},
              top_ops=[dict(name=n, ms=ms, kind=classify(by_name[n], comps),
                            shape=by_name[n]["shape"][:80], op_name=by_name[n]["op_name"][-110:])
                       for n, ms in top_ops],
              unmatched_ms=sum(unmatched.values()),
              unmatched_top=sorted(unmatched.items(), key=lambda kv: -kv[1])[:5])


def _dot_flops(comps, top):
  """2 * output elements * contracted size of every dot (top level or inside a fusion), summed
  per top-level instruction name."""
  shapes = {j["name"]: j["shape"] for instrs in comps.values() for j in instrs}
  out = {}
  for i in top:
    body = comps.get(i["calls"][0], []) if i["opcode"] == "fusion" and i["calls"] else [i]
    total = 0.0
    for j in body:
      if j["opcode"] != "dot":
        continue
      lhs = re.match(r"\s*%([\w.\-]+)", j["rest"])
      contract = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", j["rest"])
      dims = _SHAPE.search(shapes.get(lhs.group(1), "")) if lhs else None
      if not (dims and contract):
        continue
      lhs_dims = [int(x) for x in dims.group(2).split(",") if x]
      k = int(np.prod([lhs_dims[int(a)] for a in contract.group(1).split(",") if a] or [1]))
      total += 2.0 * _elements(j["shape"]) * k
    if total:
      out[i["name"]] = total
  return out


# --- MixerBlock pieces ---------------------------------------------------------------------------

# (H, C_in, C_out, occurrences) of the MixerBlocks of the paper network (dim 16, mults 1,2,4,8).
BLOCKS = [(32, 1, 16, 1), (32, 16, 16, 1), (16, 16, 32, 1), (16, 32, 32, 1), (8, 32, 64, 1),
          (8, 64, 64, 1), (4, 64, 128, 1), (4, 128, 128, 3), (4, 256, 64, 1), (4, 64, 64, 1),
          (8, 128, 32, 1), (8, 32, 32, 1), (16, 64, 16, 1), (16, 16, 16, 1)]


def _mlp(x, w1, b1, w2, b2, gelu):
  return gelu(x @ w1 + b1) @ w2 + b2


def _batched(w, v):
  """W^T @ v_b per window, as the matmul implementation's temporal MLP runs it."""
  return jax.lax.dot_general(jnp.broadcast_to(w.T, (v.shape[0],) + w.T.shape), v,
                             (((2,), (1,)), ((0,), (0,))))


def block_pieces(batch, horizon, d, c_in, c_out):
  """{piece: (f(params, x) -> array, params, x)} for one block shape: the pieces of the matmul
  implementation's block (`_MixerBlockFused`, one (B, H, D*C) layout), the former layout's
  transposes, the GELU variants on the temporal hidden activations, and both whole blocks."""
  dn = denoisers
  r = np.random.default_rng(0)
  n = lambda *s: jnp.asarray(r.standard_normal(s, dtype=np.float32) / np.sqrt(s[0]))
  x = n(batch, horizon, d, c_in) * np.sqrt(batch)
  m, h = d * c_in, horizon
  rows = x.reshape(batch, h, m)
  pf = (n(m, 4 * c_in), jnp.zeros(4 * c_in), n(4 * c_in, m), jnp.zeros(m))
  w1, w2 = n(h, 4 * h), n(4 * h, h)
  hidden = n(batch, 4 * h, m) * np.sqrt(batch)
  ln = dn._layer_norm  # pylint: disable=protected-access
  pieces = {
      "feature LayerNorm": (lambda p, v: ln(v, -1, *p), (jnp.ones(m), jnp.zeros(m)), rows),
      "feature MLP": (lambda p, v: _mlp(v, *p, dn.gelu_erf), pf, rows.reshape(-1, m)),
      "temporal LayerNorm": (lambda p, v: ln(v, 1, p[0][:, None], p[1][:, None]),
                             (jnp.ones(h), jnp.zeros(h)), rows),
      "temporal MLP": (lambda p, v: _batched(p[2], dn.gelu_erf(_batched(p[0], v) +
                                                                p[1][:, None])) + p[3][:, None],
                       (w1, jnp.zeros(4 * h), w2, jnp.zeros(h)), rows),
      "former layout transposes": (lambda p, v: jnp.transpose(jnp.transpose(v, (0, 2, 3, 1)) * p,
                                                              (0, 3, 1, 2)), jnp.ones(()), x),
      "GELU erf (temporal hidden)": (lambda p, v: dn.gelu_erf(v * p), jnp.ones(()), hidden),
      "GELU erfc (same)": (lambda p, v: jax.nn.gelu(v * p, approximate=False), jnp.ones(()),
                           hidden),
      "GELU tanh (same)": (lambda p, v: jax.nn.gelu(v * p, approximate=True), jnp.ones(()),
                           hidden),
  }
  emb = jnp.ones((batch, 32))
  for name, mod in (("whole block", dn._MixerBlockFused(c_out)),  # pylint: disable=protected-access
                    ("former block", dn.MixerBlock(c_out))):
    mp = mod.init(jax.random.key(1), x, emb)
    pieces[name] = (lambda p, v, mod=mod: mod.apply(p, v, emb), mp, x)
  return pieces


def time_pieces(batch, horizon, d, rounds):
  calls, meta = {}, {}
  for h_div, c_in, c_out, count in BLOCKS:
    h = horizon * h_div // 32
    for piece, (f, p, x) in block_pieces(batch, h, d, c_in, c_out).items():
      g = jax.jit(jax.grad(lambda p, v, f=f: jnp.sum(jnp.square(f(p, v))), argnums=(0, 1)))
      key = f"H{h} {c_in}->{c_out}|{piece}"
      calls[key] = functools.partial(g, p, x)
      meta[key] = (f"H{h} {c_in}->{c_out}", piece, count)
  for fn in calls.values():
    bench.block(fn())
  best = {k: float("inf") for k in calls}
  for _ in range(rounds):
    for k, fn in calls.items():
      t0 = time.perf_counter()
      bench.block(fn())
      best[k] = min(best[k], time.perf_counter() - t0)
  rows = collections.defaultdict(dict)
  totals = collections.defaultdict(float)
  for k, t in best.items():
    shape, piece, count = meta[k]
    rows[shape][piece] = 1e3 * t
    rows[shape]["count"] = count
    totals[piece] += 1e3 * t * count
  return dict(rows=dict(rows), weighted_total_ms=dict(totals))


# --- main ----------------------------------------------------------------------------------------

def _print_table(title, rows, cols):
  print(f"\n{title}")
  print("  " + " ".join(f"{c:>14s}" if i else f"{c:34s}" for i, c in enumerate(cols)))
  for r in rows:
    print("  " + " ".join(f"{v:>14}" if i else f"{v:34s}" for i, v in enumerate(r)))


def main(argv):
  del argv
  unknown = set(_PARTS.value) - {"census", "trace", "pieces"}
  if unknown:
    raise app.UsageError(f"--parts: unknown {sorted(unknown)}; expected census, trace, pieces")
  if _IMPL.value not in ("matmul", "conv"):
    raise app.UsageError(f"--impl must be matmul or conv, got {_IMPL.value!r}")
  out = {"batch": _BATCH.value, "window": [_HORIZON.value, _FEATURES.value], "impl": _IMPL.value,
         "xla_flags": os.environ.get("XLA_FLAGS", ""), "load_before": list(os.getloadavg()),
         "machine": bench.machine_info()}
  if _CACHE.value:
    jax.config.update("jax_compilation_cache_dir", _CACHE.value)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  peak = bench.peak_matmul_flops(_PEAK_N.value)
  out["peak_flops"] = peak
  print(f"peak fp32 matmul {peak / 1e9:.1f} GFLOP/s, load {os.getloadavg()}", flush=True)
  if {"census", "trace"} & set(_PARTS.value):
    step, state, data, key = make_step(_BATCH.value, _HORIZON.value, _FEATURES.value, _IMPL.value)
    t0 = time.perf_counter()
    compiled = step.lower(state, data, key).compile()
    out["compile_s"] = time.perf_counter() - t0
    cen, comps, top = census(compiled.as_text())
    out["census"] = cen
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    out["xla_flops_per_step"] = float(cost.get("flops", 0.0))
    print(f"compile {out['compile_s']:.1f} s; {cen['top_level']} top-level operations; "
          f"XLA flops per step {out['xla_flops_per_step'] / 1e9:.1f} GFLOP; float64 "
          f"instructions: {cen['num_f64']}", flush=True)
    _print_table("HLO census (top-level operations of one step)",
                 [(k, v["count"], f"{v['floats_written'] / 1e6:.1f}M")
                  for k, v in sorted(cen["kinds"].items())], ("kind", "count", "floats out"))
    if "trace" in _PARTS.value:
      tr = trace_step(compiled, (state, data, key), _STEPS.value, comps, top)
      out["trace"] = tr
      wall = min(tr["wall_ms"])
      _print_table(f"trace: per step, wall {wall:.0f} ms (best of {_STEPS.value}), summed "
                   f"operation time {tr['op_ms_sum']:.0f} ms",
                   [(k, v["count"], f"{v['ms']:.1f}", f"{100 * v['ms'] / tr['op_ms_sum']:.1f}%",
                     f"{v['gflop'] / (v['ms'] * 1e-3) if v['gflop'] else 0:.1f}")
                    for k, v in sorted(tr["kinds"].items(), key=lambda kv: -kv[1]["ms"])],
                   ("kind", "ops", "ms", "share", "GFLOP/s"))
      _print_table("trace: per network part (ms per step)",
                   [(p, f"{v['fwd_ms']:.1f}", f"{v['bwd_ms']:.1f}",
                     f"{100 * (v['fwd_ms'] + v['bwd_ms']) / tr['op_ms_sum']:.1f}%")
                    for p, v in sorted(tr["parts"].items(),
                                       key=lambda kv: -kv[1]["fwd_ms"] - kv[1]["bwd_ms"])],
                   ("part", "forward", "backward", "share"))
      print("\n  slowest operations:")
      for o in tr["top_ops"][:12]:
        print(f"  {o['ms']:8.1f} ms  {o['kind']:18s} {o['shape'][:40]:40s} {o['op_name'][-60:]}")
      dots = tr["kinds"].get("dot", {"ms": 0, "gflop": 0})
      dfus = tr["kinds"].get("dot_fusion", {"ms": 0, "gflop": 0})
      g, ms = dots["gflop"] + dfus["gflop"], dots["ms"] + dfus["ms"]
      out["dot_gflop_per_step"], out["dot_ms_per_step"] = g, ms
      print(f"\n  matmuls: {g:.1f} GFLOP per step in {ms:.0f} ms = {g / (ms * 1e-3):.1f} GFLOP/s "
            f"({100 * g / (ms * 1e-3) / (peak / 1e9):.0f}% of the measured peak); all work at "
            f"the peak would take {1e3 * out['xla_flops_per_step'] / peak:.0f} ms")
  if "pieces" in _PARTS.value:
    pc = time_pieces(_BATCH.value, _HORIZON.value, _FEATURES.value, _ROUNDS.value)
    out["pieces"] = pc
    total = pc["weighted_total_ms"]["whole block"]
    print(f"\nMixerBlock pieces, forward+backward, summed over the network's {sum(b[3] for b in BLOCKS)} "
          f"blocks (batch {_BATCH.value}, D {_FEATURES.value}); per shape in the JSON:")
    for piece, ms in pc["weighted_total_ms"].items():
      print(f"  {piece:30s} {ms:9.1f} ms  ({100 * ms / total:5.1f}% of the whole blocks)")
  out["load_after"] = list(os.getloadavg())
  bench.write_json(_OUT.value, out)
  print(f"\nload before {out['load_before']}, after {out['load_after']}; wrote {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
