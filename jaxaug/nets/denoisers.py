"""Raw denoiser networks F(x_in, c_noise, cond, use_cond) for the EDM core.

* `MixerUnet`: GTA's temporal U-Net whose blocks are MLP-Mixer blocks (GTA App. A.2), over
  windows x of shape (B, H, D). Layout channels-last: (B, H, D, C) with C = 1 at the input.
* `ResidualMLP`: SynthER's residual MLP over flat rows x of shape (B, D).

Normalisation layers mirror the PyTorch modules of the official code: epsilon 1e-5 (torch's
default; flax's is 1e-6) and two-pass variance (`use_fast_variance=False`). flax's default
one-pass variance E[x^2] - E[x]^2 loses precision on rows with a large |mean| / std, which
MixerUnet's temporal LayerNorm sees (ratios up to ~300 at initialisation).

Both follow the signature expected by `jaxaug.diffusion.edm.precondition`: `c_noise` is (B,),
`cond` (B, cond_dim) or None, `use_cond` (B,) in {0, 1} or None (= all 1). A dropped condition
is the *null embedding* (zero), not a zero return (GTA's convention).

The random-Fourier time features are frozen in the original code; here they are a parameter
named `fourier_freqs` behind `stop_gradient` (their gradient is zero, so AdamW without weight
decay never moves them). `count_params(..., trainable_only=True)` leaves them out, as the papers'
counts do.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxaug.nets.mlp import mish  # one Mish for every network (re-exported here)


class RandomFourierFeatures(nn.Module):
  """[t, sin(2 pi w t), cos(2 pi w t)] with frozen w ~ N(0, 1): `dim + 1` features."""

  dim: int = 16

  @nn.compact
  def __call__(self, t: jax.Array) -> jax.Array:
    if self.dim % 2:
      raise ValueError(f"RandomFourierFeatures.dim must be even, got {self.dim}")
    w = self.param("fourier_freqs", nn.initializers.normal(1.0), (self.dim // 2,))
    w = jax.lax.stop_gradient(w)
    t = t.reshape(-1, 1)
    f = t * w[None, :] * 2.0 * math.pi
    return jnp.concatenate([t, jnp.sin(f), jnp.cos(f)], axis=-1)


# --- GTA: MixerUnet ------------------------------------------------------------------------------

class FeedForward(nn.Module):
  hidden: int
  out: int

  @nn.compact
  def __call__(self, x):
    return nn.Dense(self.out)(nn.gelu(nn.Dense(self.hidden)(x), approximate=False))


class MixerBlock(nn.Module):
  """Feature-mixing MLP (per row, over C*D) + temporal-mixing MLP (per channel and feature, over
  H), summed; 1x1 conv to dim_out; embedding bias; residual 1x1 conv."""

  dim_out: int

  @nn.compact
  def __call__(self, x: jax.Array, emb: jax.Array) -> jax.Array:
    b, h, d, c = x.shape
    feat = nn.LayerNorm(epsilon=1e-5, use_fast_variance=False)(x.reshape(b, h, d * c))
    feat = FeedForward(4 * c, d * c)(feat).reshape(b, h, d, c)
    temp = jnp.transpose(x, (0, 2, 3, 1))  # (B, D, C, H)
    temp = FeedForward(4 * h, h)(nn.LayerNorm(epsilon=1e-5, use_fast_variance=False)(temp))
    temp = jnp.transpose(temp, (0, 3, 1, 2))
    y = feat + temp
    if c != self.dim_out:
      y = nn.Dense(self.dim_out, name="output_conv")(y)
    y = y + nn.Dense(self.dim_out, name="emb_proj")(mish(emb))[:, None, None, :]
    res = nn.Dense(self.dim_out, name="res_conv")(x) if c != self.dim_out else x
    return y + res


class LinearAttention(nn.Module):
  """Linear attention over all H*D positions (softmax over positions on the keys only)."""

  heads: int = 4
  dim_head: int = 32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, h, d, c = x.shape
    hidden = self.heads * self.dim_head
    qkv = nn.Dense(3 * hidden, use_bias=False, name="to_qkv")(x).reshape(b, h * d, 3, self.heads,
                                                                          self.dim_head)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (B, N, heads, dh)
    k = jax.nn.softmax(k, axis=1)
    context = jnp.einsum("bnhd,bnhe->bhde", k, v)
    out = jnp.einsum("bhde,bnhd->bnhe", context, q).reshape(b, h, d, hidden)
    return nn.Dense(c, name="to_out")(out)


class AttentionResidual(nn.Module):
  """x + LinearAttention(InstanceNorm(x)) (affine instance norm = GroupNorm, 1 channel/group)."""

  @nn.compact
  def __call__(self, x):
    y = nn.GroupNorm(num_groups=None, group_size=1, epsilon=1e-5, use_fast_variance=False)(x)
    return x + LinearAttention()(y)


class MixerUnet(nn.Module):
  """GTA's denoiser (GTA App. A.2; docs/methods/edm.md "Denoiser networks").

  dim_mults (1, 2, 4, 8) with dim 16 gives channels 16, 32, 64, 128; only the horizon is
  resampled (32 -> 16 -> 8 -> 4 with 4 stages). Embedding: time (random Fourier -> 4*dim ->
  Mish -> dim) concatenated with condition (cond_dim -> 2*dim -> Mish -> dim, times use_cond).
  """

  dim: int = 16
  dim_mults: Sequence[int] = (1, 2, 4, 8)
  cond_dim: int = 1
  fourier_dim: int = 16
  attention: bool = True  # the tiny CPU preset drops the linear attention (slow on XLA:CPU)
  # "matmul" (default): convolutions as slices + matmuls, a reassociated linear attention and
  # MixerBlocks in one layout with torch's erf GELU (fast on XLA:CPU, docs/performance.md);
  # "conv": flax nn.Conv / nn.ConvTranspose, MixerBlock and the attention as written. Same parameter tree, initial values and outputs (to float rounding;
  # tests/test_perf_parity.py).
  impl: str = "matmul"

  @nn.compact
  def __call__(self, x: jax.Array, c_noise: jax.Array, cond: jax.Array | None = None,
               use_cond: jax.Array | None = None) -> jax.Array:
    b, horizon, _ = x.shape
    n_down = len(self.dim_mults) - 1
    if horizon % (2**n_down):
      raise ValueError(f"MixerUnet: horizon {horizon} must be divisible by 2**{n_down}")
    if self.impl not in ("matmul", "conv"):
      raise ValueError(f"MixerUnet.impl must be 'matmul' or 'conv', got {self.impl!r}")
    t = RandomFourierFeatures(self.fourier_dim)(c_noise)
    t = nn.Dense(self.dim)(mish(nn.Dense(4 * self.dim)(t)))
    if self.cond_dim > 0:
      if cond is None:
        c = jnp.zeros((b, self.dim), x.dtype)
      else:
        c = cond.reshape(b, self.cond_dim).astype(x.dtype)
        c = nn.Dense(self.dim)(mish(nn.Dense(2 * self.dim)(c)))
        if use_cond is not None:
          c = c * use_cond.reshape(b, 1).astype(x.dtype)
      emb = jnp.concatenate([c, t], axis=-1)
    else:
      emb = t

    dims = [self.dim * m for m in self.dim_mults]
    if self.impl == "matmul":
      return _mixer_unet_matmul(x, emb, dims, self.dim, self.attention)
    h = x[..., None]
    skips = []
    for i, d_out in enumerate(dims):
      h = MixerBlock(d_out)(h, emb)
      h = MixerBlock(d_out)(h, emb)
      h = AttentionResidual()(h) if self.attention else h
      skips.append(h)
      if i < len(dims) - 1:
        h = nn.Conv(d_out, (3, 3), strides=(2, 1), padding=((1, 1), (1, 1)))(h)

    h = MixerBlock(dims[-1])(h, emb)
    h = AttentionResidual()(h) if self.attention else h
    h = MixerBlock(dims[-1])(h, emb)

    # The up path mirrors all but the first stage; the first stage's output is not used as a skip
    # (as in the original architecture).
    for d_in in reversed(dims[:-1]):
      h = jnp.concatenate([h, skips.pop()], axis=-1)
      h = MixerBlock(d_in)(h, emb)
      h = MixerBlock(d_in)(h, emb)
      h = AttentionResidual()(h) if self.attention else h
      h = nn.ConvTranspose(d_in, (4, 3), strides=(2, 1), padding="SAME")(h)

    h = nn.Conv(self.dim, (3, 3), padding=((1, 1), (1, 1)))(h)
    h = mish(nn.GroupNorm(num_groups=min(8, self.dim), epsilon=1e-5,
                          use_fast_variance=False)(h))
    return nn.Conv(1, (1, 1))(h)[..., 0]


# --- MixerUnet, matmul implementation ------------------------------------------------------------
# The same network and layout (B, H, D, C) with two changes XLA:CPU rewards (docs/performance.md):
# * the 3x3 and (4,3) convolutions are shifted slices of the horizon axis stacked on the channel
#   axis followed by one matmul, so their weight gradients are matmuls too (XLA:CPU lowers the
#   nn.Conv weight gradients as convolutions whose window spans the whole feature map, at
#   ~1 GFLOP/s);
# * the linear attention's products are reassociated (`_AttentionResidualFactored`), so only
#   the keys are materialised per position.
# * the MixerBlocks keep one (B, H, D*C) layout (`_MixerBlockFused`): no transposes around the
#   temporal MLP, which runs as batched matmuls over H.
# Parameters are declared under the names, shapes, creation order and initialisers of the flax
# layers they replace, so `impl="conv"` and `impl="matmul"` share checkpoints and initial values.

class _Weights(nn.Module):
  """Parameters of one flax layer: kernel (lecun normal) + bias (zeros), as nn.Dense / nn.Conv
  / nn.ConvTranspose create them."""

  shape: tuple
  use_bias: bool = True

  @nn.compact
  def __call__(self):
    w = self.param("kernel", nn.initializers.lecun_normal(), self.shape)
    b = self.param("bias", nn.initializers.zeros, (self.shape[-1],)) if self.use_bias else None
    return w, b


def _linear(x, w, b=None):
  """x @ w over the last axis (+ b): a 1x1 conv or a Dense."""
  y = jnp.einsum("...c,co->...o", x, w)
  return y if b is None else y + b


def _conv3x3(x, w, b, stride):
  """nn.Conv(kernel (3, 3), strides (stride, 1), padding 1) on (B, H, D, C), as one matmul."""
  _, hh, d, c = x.shape
  h_out = (hh - 1) // stride + 1
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  cols = [xp[:, i:i + stride * (h_out - 1) + 1:stride, j:j + d]
          for i in range(3) for j in range(3)]
  patches = jnp.concatenate(cols, axis=-1)  # (B, H_out, D, 9 C), ordered (i, j, c) as w
  return _linear(patches, w.reshape(9 * c, -1), b)


def _conv_transpose_4x3(x, w, b):
  """nn.ConvTranspose(kernel (4, 3), strides (2, 1), padding SAME) on (B, H, D, C).

  flax (no kernel flip) dilates the horizon by 2 and pads it by 2 on both sides, so output row
  2m reads input rows m-1, m with kernel rows 0, 2 and row 2m+1 reads m, m+1 with rows 1, 3; the
  feature axis is a SAME 3-tap correlation. Even and odd rows are two matmuls, interleaved."""
  bb, hh, d, c = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))

  def half(starts, k_rows):  # input rows m-1+start for the two kernel rows
    cols = [xp[:, a:a + hh, j:j + d] for a in starts for j in range(3)]
    return _linear(jnp.concatenate(cols, axis=-1), w[jnp.array(k_rows)].reshape(6 * c, -1))

  even, odd = half((0, 1), (0, 2)), half((1, 2), (1, 3))
  return jnp.stack([even, odd], axis=2).reshape(bb, 2 * hh, d, -1) + b


class _LinearAttentionW(nn.Module):
  """LinearAttention's parameters: to_qkv kernel (no bias), to_out kernel + bias."""

  heads: int = 4
  dim_head: int = 32

  @nn.compact
  def __call__(self, c):
    hidden = self.heads * self.dim_head
    w_qkv, _ = _Weights((c, 3 * hidden), use_bias=False, name="to_qkv")()
    return w_qkv, _Weights((hidden, c), name="to_out")()


class _AttentionResidualFactored(nn.Module):
  """AttentionResidual (same parameters, same function up to float rounding) with the linear
  attention's products reassociated so that only the keys are materialised per position:

    context_bh = softmax_n(k)^T v = (softmax_n(k)^T y) W_v,h      (dh x dh per batch and head)
    out_b = sum_h q_bh context_bh W_out,h = y_b M_b,   M_b = sum_h W_q,h context_bh W_out,h

  with y the normalised input (B, N, C). The position-wide work falls from a 3*128-wide
  projection + two 128-wide products + a 128-wide output projection to one 128-wide
  projection (the keys, needed for the softmax) and two C-wide products."""

  heads: int = 4
  dim_head: int = 32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, h, d, c = x.shape
    y = nn.GroupNorm(num_groups=None, group_size=1, epsilon=1e-5, use_fast_variance=False,
                     name="GroupNorm_0")(x)
    w_qkv, (w_out, b_out) = _LinearAttentionW(self.heads, self.dim_head,
                                              name="LinearAttention_0")(c)
    w_q, w_k, w_v = (w_qkv[:, i * self.heads * self.dim_head:(i + 1) * self.heads *
                           self.dim_head].reshape(c, self.heads, self.dim_head)
                     for i in range(3))
    y = y.reshape(b, h * d, c)
    k = jax.nn.softmax(jnp.einsum("bnc,chd->bnhd", y, w_k), axis=1)
    s = jnp.einsum("bnhd,bnc->bhdc", k, y)
    context = jnp.einsum("bhdc,che->bhde", s, w_v)
    m = jnp.einsum("chd,bhde,heo->bco", w_q, context,
                   w_out.reshape(self.heads, self.dim_head, c))
    return x + (jnp.einsum("bnc,bco->bno", y, m) + b_out).reshape(b, h, d, c)

def gelu_erf(x: jax.Array) -> jax.Array:
  """Exact GELU written as PyTorch's nn.GELU() computes it, x/2 (1 + erf(x / sqrt 2)).

  Equal to `jax.nn.gelu(x, approximate=False)` (written with erfc) to float32 rounding: within
  2-3 ulp of the output for x >= 0, and below 1e-6 absolute (a few ulp of 1) for x < 0, where
  1 + erf cancels (the torch reference has the same cancellation); derivatives likewise. XLA:CPU evaluates erf as one
  rational polynomial and erfc with an exp and two branches: erf is ~2.4x faster forward."""
  return 0.5 * x * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0))))


def _layer_norm(x, axis, scale, bias):
  """LayerNorm over `axis` as MixerBlock's flax LayerNorms compute it (epsilon 1e-5 as torch,
  two-pass variance); `scale` and `bias` broadcast against x."""
  mean = jnp.mean(x, axis=axis, keepdims=True)
  y = x - mean
  var = jnp.mean(jnp.square(y), axis=axis, keepdims=True)
  return y * (jax.lax.rsqrt(var + 1e-5) * scale) + bias


class _LayerNormW(nn.Module):
  """nn.LayerNorm's parameters (scale ones, bias zeros)."""

  n: int

  @nn.compact
  def __call__(self):
    return (self.param("scale", nn.initializers.ones, (self.n,)),
            self.param("bias", nn.initializers.zeros, (self.n,)))


class _FeedForwardW(nn.Module):
  """FeedForward's parameters as ((w_in, b_in), (w_out, b_out)). In FeedForward the output
  layer is constructed first, so it is Dense_0 (hidden -> out) and the input layer Dense_1
  (d_in -> hidden)."""

  d_in: int
  hidden: int
  out: int

  @nn.compact
  def __call__(self):
    w_out = _Weights((self.hidden, self.out), name="Dense_0")()
    return _Weights((self.d_in, self.hidden), name="Dense_1")(), w_out


class _MixerBlockFused(nn.Module):
  """MixerBlock (same parameters, same function up to float rounding) in one layout, (B, H, D*C)
  rows, with no transpose:

  * the temporal LayerNorm reduces over the H axis in place (its statistics over a minor axis
    of 4-32 elements vectorise badly) and the temporal MLP is two batched matmuls per window,
    W1^T (4H x H) @ y_b (H x D*C) and W2^T (H x 4H) @ hidden_b, instead of transposing to
    (B, D, C, H), a Dense over H and a transpose back;
  * the exact GELU is `gelu_erf` (torch's formula; erf instead of erfc).

  Forward+backward of the temporal branch: 1.3-4.8x faster at the network's block shapes
  (docs/performance.md)."""

  dim_out: int

  @nn.compact
  def __call__(self, x: jax.Array, emb: jax.Array) -> jax.Array:
    b, h, d, c = x.shape
    m = d * c
    rows = x.reshape(b, h, m)
    # Named scopes label the operations for the profile (experiments/profile_mixer_unet.py).
    g0, b0 = _LayerNormW(m, name="LayerNorm_0")()
    (w1, c1), (w2, c2) = _FeedForwardW(m, 4 * c, m, name="FeedForward_0")()
    with jax.named_scope("feature_norm"):
      y = _layer_norm(rows, -1, g0, b0)
    with jax.named_scope("feature_mlp"):
      feat = _linear(gelu_erf(_linear(y, w1, c1)), w2, c2)
    g1, b1 = _LayerNormW(h, name="LayerNorm_1")()
    (u1, e1), (u2, e2) = _FeedForwardW(h, 4 * h, h, name="FeedForward_1")()
    with jax.named_scope("temporal_norm"):  # over H, per (window, feature, channel)
      y = _layer_norm(rows, 1, g1[:, None], b1[:, None])
    # Batched matmuls with the (tiny) weights broadcast over the windows: XLA:CPU then runs
    # W^T @ y_b per window on the row-major (H, D*C) block, where a dot_general contracting
    # the middle axis of (B, H, D*C) would be lowered with transposes.
    batched = lambda w, v: jax.lax.dot_general(jnp.broadcast_to(w.T, (b,) + w.T.shape), v,
                                               (((2,), (1,)), ((0,), (0,))))
    with jax.named_scope("temporal_mlp"):
      temp = batched(u2, gelu_erf(batched(u1, y) + e1[:, None])) + e2[:, None]
    out = (feat + temp).reshape(b, h, d, c)
    if c != self.dim_out:
      out = nn.Dense(self.dim_out, name="output_conv")(out)
    out = out + nn.Dense(self.dim_out, name="emb_proj")(mish(emb))[:, None, None, :]
    res = nn.Dense(self.dim_out, name="res_conv")(x) if c != self.dim_out else x
    return out + res


def _mixer_unet_matmul(x, emb, dims, dim, attention):
  """MixerUnet's body after the embedding; called inside MixerUnet's compact scope, so the
  submodules created here get the names the nn.Conv path's get."""
  n_block = n_attn = n_conv = n_up = 0

  def block(h, d_out):
    nonlocal n_block
    n_block += 1
    return _MixerBlockFused(d_out, name=f"MixerBlock_{n_block - 1}")(h, emb)

  def attn(h):
    nonlocal n_attn
    if not attention:
      return h
    n_attn += 1
    return _AttentionResidualFactored(name=f"AttentionResidual_{n_attn - 1}")(h)

  def conv_w(shape):
    nonlocal n_conv
    n_conv += 1
    return _Weights(shape, name=f"Conv_{n_conv - 1}")()

  h = x[..., None]
  skips = []
  for i, d_out in enumerate(dims):
    h = block(h, d_out)
    h = block(h, d_out)
    h = attn(h)
    skips.append(h)
    if i < len(dims) - 1:
      h = _conv3x3(h, *conv_w((3, 3, d_out, d_out)), stride=2)
  h = block(h, dims[-1])
  h = attn(h)
  h = block(h, dims[-1])
  for d_in in reversed(dims[:-1]):
    h = jnp.concatenate([h, skips.pop()], axis=-1)
    h = block(h, d_in)
    h = block(h, d_in)
    h = attn(h)
    n_up += 1
    h = _conv_transpose_4x3(h, *_Weights((4, 3, d_in, d_in), name=f"ConvTranspose_{n_up - 1}")())
  h = _conv3x3(h, *conv_w((3, 3, h.shape[-1], dim)), stride=1)
  h = mish(nn.GroupNorm(num_groups=min(8, dim), epsilon=1e-5, use_fast_variance=False,
                        name="GroupNorm_0")(h))
  w, b = conv_w((1, 1, dim, 1))
  return _linear(h, w[0, 0], b)[..., 0]


# --- SynthER: residual MLP --------------------------------------------------------------------------

class ResidualMLP(nn.Module):
  """SynthER's denoiser: [x, cond] -> Linear(dim_t) + time embedding -> Linear(width) ->
  num_blocks x (x + Linear(ReLU(x))) -> ReLU -> Linear(d_in). Conditioning by concatenation."""

  width: int = 1024
  num_blocks: int = 6
  dim_t: int = 128
  fourier_dim: int = 16

  @nn.compact
  def __call__(self, x: jax.Array, c_noise: jax.Array, cond: jax.Array | None = None,
               use_cond: jax.Array | None = None) -> jax.Array:
    b, d_in = x.shape
    inp = x
    if cond is not None:
      c = cond.reshape(b, -1).astype(x.dtype)
      if use_cond is not None:
        c = c * use_cond.reshape(b, 1).astype(x.dtype)
      inp = jnp.concatenate([x, c], axis=-1)
    t = RandomFourierFeatures(self.fourier_dim)(c_noise)
    t = nn.Dense(self.dim_t)(nn.silu(nn.Dense(self.dim_t)(t)))
    h = nn.Dense(self.dim_t)(inp) + t
    h = nn.Dense(self.width)(h)
    for _ in range(self.num_blocks):
      h = h + nn.Dense(self.width)(nn.relu(h))
    return nn.Dense(d_in)(nn.relu(h))


# --- Presets and helpers --------------------------------------------------------------------------

def make_denoiser_net(name: str, **kwargs) -> nn.Module:
  """Build a raw denoiser by name ('mixer_unet' | 'resmlp') with keyword hyperparameters."""
  if name == "mixer_unet":
    return MixerUnet(**kwargs)
  if name == "resmlp":
    return ResidualMLP(**kwargs)
  raise ValueError(f"unknown denoiser {name!r}; expected 'mixer_unet' or 'resmlp'")


PRESETS = {
    # GTA paper: ~29.6M params at D=24, H=32.
    "mixer_unet_paper": dict(dim=16, dim_mults=(1, 2, 4, 8)),
    "mixer_unet_tiny": dict(dim=8, dim_mults=(1, 2), attention=False),
    # SynthER: W=2048 (~25.6M at d_in 42) is the paper's offline setting, W=1024 ~6.5M.
    "resmlp_paper": dict(width=2048, num_blocks=6, dim_t=128),
    "resmlp_1024": dict(width=1024, num_blocks=6, dim_t=128),
    "resmlp_tiny": dict(width=64, num_blocks=2, dim_t=32),
}


def count_params(params, trainable_only: bool = True) -> int:
  """Number of parameters; frozen Fourier frequencies are left out when trainable_only."""
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  n = 0
  for path, leaf in flat:
    if trainable_only and any(getattr(p, "key", None) == "fourier_freqs" for p in path):
      continue
    n += int(leaf.size)
  return n
