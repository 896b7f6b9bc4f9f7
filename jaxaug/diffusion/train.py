"""A diffusion "learner" with the agent protocol's shape, for the generic train loop.

    get_config() -> ConfigDict
    init(key, example_batch, config) -> DiffusionState
    update(state, batch, key) -> (state, metrics)
    denoiser(state, ema=True) -> D(x, sigma, cond=None, use_cond=None)

`batch` is a dict with 'x' (B, ...) and optionally 'cond' (B, cond_dim) and 'mask' (broadcastable
to x; 1 = entry counted in the loss). Training follows the official SynthER / GTA code
(docs/methods/edm.md): AdamW lr 3e-4, betas (0.9, 0.99), wd 0, cosine schedule, global-norm
clipping 1.0, log-normal training noise and EDM loss weighting, condition dropout, and an EMA of
the parameters as ema-pytorch 0.2.5 keeps it (`ema_warmup`): updated every `ema_every` = 10
steps, a copy of the model for the first `ema_update_after_step` = 100 steps, then the decay
min(ema_decay, 1 - (1 + epoch / inv_gamma)^-power) (see `ema_decay_at`). Sampling uses the EMA
parameters.

The state follows the agent convention (jaxaug.agents.common): `hp` is a `Hyper` built from this
config, its float fields (p_mean, p_std, cond_dropout, ema_decay, ema_inv_gamma, ema_power)
leaves and the rest (sigma_data, noise distribution, EMA schedule integers, switches) static;
the learning rate is a leaf of the optimiser state (`make_optimizer` injects it). The network
and the optimiser are static fields. States differing only in leaves share one program.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxaug.agents import common
from jaxaug.diffusion import edm
from jaxaug.nets import denoisers


class DiffusionState(flax.struct.PyTreeNode):
  params: Any
  ema_params: Any
  opt_state: Any
  step: jax.Array
  hp: common.Hyper
  net: nn.Module = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)


def get_config() -> ml_collections.ConfigDict:
  """Training defaults of SynthER / GTA; `net` is the denoiser name + keyword arguments."""
  c = ml_collections.ConfigDict()
  c.net = "resmlp"
  c.net_kwargs = ml_collections.ConfigDict(denoisers.PRESETS["resmlp_1024"])
  c.sigma_data = 1.0
  c.noise_dist = "lognormal"  # lognormal | truncated_loglogistic
  c.p_mean = -1.2
  c.p_std = 1.2
  c.cond_dropout = 0.0  # GTA: 0.25
  c.learning_rate = 3e-4
  c.b1 = 0.9
  c.b2 = 0.99
  c.weight_decay = 0.0
  c.grad_clip = 1.0
  c.lr_schedule = "cosine"  # cosine (over num_steps) | cosine_restarts | constant
  c.restart_every = 100_000  # GTA's "cosinewarmup": cosine restarted every 100k steps
  c.num_steps = 100_000  # length of the cosine schedule
  c.ema_decay = 0.995
  c.ema_every = 10
  # ema-pytorch 0.2.5 (official GTA / SynthER): copy the model for the first
  # ema_update_after_step steps, then warm the decay up as min(ema_decay, 1 - (1 + epoch /
  # ema_inv_gamma)^-ema_power). False: a plain EMA with ema_decay from the first update (jaxaug's
  # earlier behaviour; short runs then sample weights that still hold much of the random init).
  c.ema_warmup = True
  c.ema_update_after_step = 100
  c.ema_inv_gamma = 1.0
  c.ema_power = 2.0 / 3.0
  # Switch (jaxaug, off = official): with a loss mask, average the per-sample error over the
  # counted entries only; official GTA averages over all entries with masked ones as zeros
  # (a constant factor, e.g. 768/761 at H=32, D=24).
  c.mask_mean_counted = False
  return c


# Config fields that build the network or the optimiser (static fields of the state), not `hp`.
NET_FIELDS = ("net", "net_kwargs")
OPTIMIZER_FIELDS = ("learning_rate", "b1", "b2", "weight_decay", "grad_clip", "lr_schedule",
                    "restart_every", "num_steps")
LR_SCHEDULES = ("cosine", "cosine_restarts", "constant")


def _schedule(config, learning_rate) -> optax.Schedule:
  """The learning rate at an optimiser step; `learning_rate` may be a traced leaf."""
  if config.lr_schedule == "cosine":
    return optax.cosine_decay_schedule(learning_rate, max(int(config.num_steps), 1))
  if config.lr_schedule == "cosine_restarts":
    period = max(int(config.restart_every), 1)
    return lambda step: learning_rate * 0.5 * (1.0 + jnp.cos(math.pi * (step % period) / period))
  return optax.constant_schedule(learning_rate)


def make_optimizer(config) -> optax.GradientTransformation:
  """Clip by global norm, then AdamW with the schedule; the base learning rate is injected (a
  leaf of the optimiser state, `common.learning_rate`-style: opt_state.hyperparams)."""
  lr = float(config.learning_rate)
  if not (math.isfinite(lr) and lr > 0):
    raise ValueError(f"config.diffusion.learning_rate must be a positive number, got {lr}")
  if config.lr_schedule not in LR_SCHEDULES:
    raise ValueError(f"config.lr_schedule: expected cosine | cosine_restarts | constant, got "
                     f"{config.lr_schedule!r}")

  def build(learning_rate):
    return optax.chain(
        optax.clip_by_global_norm(float(config.grad_clip)),
        optax.adamw(_schedule(config, learning_rate), b1=float(config.b1), b2=float(config.b2),
                    weight_decay=float(config.weight_decay)))

  return optax.inject_hyperparams(build)(learning_rate=lr)


def hyper_from_config(config) -> common.Hyper:
  """The learner's `Hyper` (float fields leaves); a config key the learner does not know is a
  ValueError naming it, a missing one takes `get_config()`'s value."""
  defaults = {k: v for k, v in get_config().items()
              if k not in NET_FIELDS + OPTIMIZER_FIELDS}
  given = {k: v for k, v in config.items() if k not in NET_FIELDS + OPTIMIZER_FIELDS}
  cfg = {**defaults, **given}
  for name, lo, hi in (("ema_decay", 0.0, 1.0), ("cond_dropout", 0.0, 1.0)):
    if not lo <= float(cfg[name]) <= hi:
      raise ValueError(f"config.diffusion.{name} must be in [{lo:g}, {hi:g}], got {cfg[name]!r}")
  if not float(cfg["cond_dropout"]) < 1.0:
    raise ValueError(f"config.diffusion.cond_dropout must be in [0, 1), got "
                     f"{cfg['cond_dropout']!r}")
  if not float(cfg["sigma_data"]) > 0:
    raise ValueError(f"config.diffusion.sigma_data must be positive, got {cfg['sigma_data']!r}")
  if cfg["noise_dist"] not in edm.SIGMA_FNS:
    raise ValueError(f"config.noise_dist: expected lognormal | truncated_loglogistic, got "
                     f"{cfg['noise_dist']!r}")
  _positive(cfg, "ema_every")
  # Ints may arrive where floats are expected (--config.diffusion.ema_power=1): keep them leaves.
  floats = ("sigma_data", "p_mean", "p_std", "cond_dropout", "ema_decay", "ema_inv_gamma",
            "ema_power")
  derived = {k: float(cfg[k]) for k in floats}
  derived.update(ema_every=int(cfg["ema_every"]),
                 ema_update_after_step=int(cfg["ema_update_after_step"]),
                 # Whether condition dropout runs at all changes the program (None vs a mask).
                 use_cond_dropout=float(cfg["cond_dropout"]) > 0)
  # sigma_data is static: with it a compile-time constant (1.0 for GTA / SynthER's normalised
  # data) XLA folds the preconditioning arithmetic; as a traced leaf the loss differs in the last
  # bit, which Adam's first steps amplify (sign of near-zero gradients). It also scales the data
  # normalisation rather than being a tuned value.
  return common.hyper_from_config(given, defaults, None, "diffusion", static=("sigma_data",),
                                  derived=derived)


def sigma_fn(hp: common.Hyper) -> edm.SigmaFn:
  """The training noise distribution of `hp` (log-normal takes p_mean / p_std)."""
  kwargs = {"p_mean": hp.p_mean, "p_std": hp.p_std} if hp.noise_dist == "lognormal" else {}
  return edm.make_sigma_fn(hp.noise_dist, **kwargs)


def _positive(config, name: str) -> int:
  v = int(config[name])
  if v < 1:
    raise ValueError(f"config.{name} must be a positive integer, got {config[name]!r}")
  return v


def build_net(config) -> nn.Module:
  kwargs = {k: (tuple(v) if isinstance(v, (list, tuple)) else v)
            for k, v in dict(config.net_kwargs).items()}
  return denoisers.make_denoiser_net(config.net, **kwargs)


def init(key: jax.Array, example_batch: dict, config) -> DiffusionState:
  """Initialise parameters from an example batch (only shapes matter)."""
  if "x" not in example_batch:
    raise ValueError("diffusion init: example_batch needs an 'x' entry (the data to model)")
  net = build_net(config)
  x = jnp.asarray(example_batch["x"])
  cond = example_batch.get("cond")
  b = x.shape[0]
  params = net.init(key, x, jnp.zeros((b,), x.dtype),
                    None if cond is None else jnp.asarray(cond), jnp.ones((b,), x.dtype))
  hp = hyper_from_config(config)
  tx = make_optimizer(config)
  return DiffusionState(params=params, ema_params=params, opt_state=tx.init(params),
                        step=jnp.zeros((), jnp.int32), hp=hp, net=net, tx=tx)


def denoiser(state: DiffusionState, ema: bool = True, params: Any = None) -> edm.Denoiser:
  """The preconditioned denoiser of the state (EMA parameters by default)."""
  p = params if params is not None else (state.ema_params if ema else state.params)

  def raw(x, c_noise, cond, use_cond):
    return state.net.apply(p, x, c_noise, cond, use_cond)

  return edm.precondition(raw, state.hp.sigma_data)


def loss_fn(params, state: DiffusionState, batch: dict, key: jax.Array):
  hp = state.hp
  k_drop, k_loss = jax.random.split(key)
  x = batch["x"]
  cond = batch.get("cond")
  use_cond = None
  if cond is not None and hp.use_cond_dropout:
    # guidance.drop_condition's draw, with the probability a leaf (range checked in
    # hyper_from_config): 1 = condition kept.
    use_cond = jax.random.bernoulli(k_drop, 1.0 - hp.cond_dropout,
                                    (x.shape[0],)).astype(jnp.float32)
  return edm.edm_loss(denoiser(state, params=params), x, k_loss, cond, batch.get("mask"),
                      sigma_fn(hp), hp.sigma_data, use_cond,
                      mask_mean_counted=hp.mask_mean_counted)


def ema_decay_at(step: jax.Array, hp: common.Hyper) -> jax.Array:
  """ema-pytorch 0.2.5's decay for the update after optimiser step `step` (1-based).

  Its counter equals `step` after the update call, so epoch = max(step - after - 1, 0) and the
  decay is 0 at epoch 0, else clip(1 - (1 + epoch / inv_gamma)^-power, 0, ema_decay).
  """
  epoch = jnp.maximum(step - hp.ema_update_after_step - 1, 0).astype(jnp.float32)
  value = 1.0 - (1.0 + epoch / hp.ema_inv_gamma)**(-hp.ema_power)
  return jnp.where(epoch <= 0, 0.0, jnp.clip(value, 0.0, hp.ema_decay))


def ema_update(ema_params: Any, params: Any, step: jax.Array, hp: common.Hyper) -> Any:
  """The EMA after optimiser step `step` (1-based, already counted), for new `params`.

  Steps on which the EMA does not move (9 in 10 with ema_every = 10) skip the blend under a
  `lax.cond` instead of computing it and selecting the old value (tests/test_perf_parity.py)."""
  if not hp.ema_warmup:
    # Plain EMA every ema_every steps (steps ema_every, 2 ema_every, ...).
    do_ema = (step % hp.ema_every) == 0
    # The blend as before the lax.cond (float32 decay, 1 - decay); equal to it within 2 ulp
    # (XLA may contract it into FMAs differently inside the branch).
    decay = jnp.where(do_ema, hp.ema_decay, 1.0)
    blend = lambda e, p, d: jax.tree.map(lambda a, b: d * a + (1.0 - d) * b, e, p)
    return jax.lax.cond(do_ema, blend, lambda e, p, d: e, ema_params, params, decay)
  # ema-pytorch: update() runs after every optimiser step and acts when its pre-increment counter
  # (step - 1) is a multiple of update_every: steps 1, 11, 21, ... It copies the model while that
  # counter is <= update_after_step and once more on the first update past it (its `initted`
  # flag), then lerps towards the model with ema_decay_at(step).
  before = step - 1
  do_ema = (before % hp.ema_every) == 0
  last_copy = (hp.ema_update_after_step // hp.ema_every + 1) * hp.ema_every
  copy = before <= last_copy
  w = 1.0 - ema_decay_at(step, hp)

  def blend(e, p):
    return jax.tree.map(lambda a, b: jnp.where(copy, b, a + w.astype(a.dtype) * (b - a)), e, p)

  return jax.lax.cond(do_ema, blend, lambda e, p: e, ema_params, params)


def update(state: DiffusionState, batch: dict, key: jax.Array):
  """One AdamW step on the EDM loss, then the EMA update (`ema_update`)."""
  loss, grads = jax.value_and_grad(loss_fn)(state.params, state, batch, key)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  step = state.step + 1
  ema = ema_update(state.ema_params, params, step, state.hp)
  metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
  return state.replace(params=params, ema_params=ema, opt_state=opt_state, step=step), metrics


def make_multi_update(num_updates: int, sample_batch):
  """K updates per call under lax.scan; `sample_batch(key) -> batch` draws on device.

  Returns `multi_update(state, key) -> (state, metrics averaged over the K updates)`.
  """

  def multi_update(state: DiffusionState, key: jax.Array):
    def body(st, k):
      kb, ku = jax.random.split(k)
      st, m = update(st, sample_batch(kb), ku)
      return st, m

    state, ms = jax.lax.scan(body, state, jax.random.split(key, num_updates))
    return state, jax.tree.map(jnp.mean, ms)

  return multi_update
