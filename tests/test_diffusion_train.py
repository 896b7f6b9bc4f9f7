"""Denoiser shapes and parameter counts; the diffusion learner (loss decreases, EMA, dropout)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxaug.diffusion import edm, samplers
from jaxaug.diffusion import train as dtrain
from jaxaug.nets import denoisers


def _shapes(net, x, cond=None):
  b = x.shape[0]
  return jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), x, jnp.zeros((b,)), cond,
                                         jnp.ones((b,))))


@pytest.mark.parametrize("d,expected", [(24, 29.6e6), (15, 18.7e6)])
def test_mixer_unet_paper_parameter_count(d, expected):
  net = denoisers.MixerUnet(**denoisers.PRESETS["mixer_unet_paper"], cond_dim=1)
  p = _shapes(net, jnp.zeros((2, 32, d)), jnp.zeros((2, 1)))
  n = denoisers.count_params(p)
  assert abs(n - expected) / expected < 0.005, n
  # The frozen Fourier frequencies exist but are not counted as trainable.
  assert denoisers.count_params(p, trainable_only=False) == n + 8


def test_resmlp_parameter_counts():
  for preset, expected in (("resmlp_1024", 6.50e6), ("resmlp_paper", 25.55e6)):
    p = _shapes(denoisers.ResidualMLP(**denoisers.PRESETS[preset]), jnp.zeros((2, 42)))
    n = denoisers.count_params(p)
    assert abs(n - expected) / expected < 0.005, (preset, n)


def test_denoiser_output_shapes_and_null_condition():
  net = denoisers.MixerUnet(**denoisers.PRESETS["mixer_unet_tiny"], cond_dim=1)
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 8, 7))
  c_noise = jnp.zeros((3,))
  p = jax.jit(net.init)(jax.random.PRNGKey(1), x, c_noise, jnp.ones((3, 1)), jnp.ones((3,)))
  # One compiled call on a batch of 4 x 3: conditions +5 / -5, each used / dropped.
  xs = jnp.concatenate([x] * 4)
  conds = jnp.concatenate([jnp.full((3, 1), v) for v in (5.0, -5.0, 5.0, -5.0)])
  use = jnp.concatenate([jnp.full((3,), v) for v in (0.0, 0.0, 1.0, 1.0)])
  y = jax.jit(net.apply)(p, xs, jnp.zeros((12,)), conds, use)
  assert y.shape == xs.shape
  # A dropped condition is the null embedding: the output no longer depends on the condition.
  assert jnp.allclose(y[0:3], y[3:6])
  assert not jnp.allclose(y[6:9], y[0:3]) and not jnp.allclose(y[6:9], y[9:12])
  with pytest.raises(ValueError, match="divisible"):
    jax.eval_shape(net.apply, p, jnp.zeros((3, 7, 7)), c_noise, jnp.ones((3, 1)))
  mlp = denoisers.ResidualMLP(**denoisers.PRESETS["resmlp_tiny"])
  z = jnp.zeros((5, 11))
  pm = jax.jit(mlp.init)(jax.random.PRNGKey(0), z, jnp.zeros((5,)))
  assert mlp.apply(pm, z, jnp.zeros((5,))).shape == (5, 11)


def _tiny_config(**kw):
  c = dtrain.get_config()
  c.net_kwargs = ml_collections.ConfigDict(denoisers.PRESETS["resmlp_tiny"])
  c.num_steps = 400
  c.learning_rate = 1e-3
  c.ema_every = 1
  for k, v in kw.items():
    c[k] = v
  return c


def _gaussian_batch(key, n=256):
  x = jax.random.normal(key, (n, 4)) * jnp.array([0.5, 1.0, 0.2, 1.5]) + jnp.array([1.0, -1, 0, 2])
  return {"x": x}


def test_tiny_training_lowers_loss_and_samples_the_data():
  c = _tiny_config()
  st = dtrain.init(jax.random.PRNGKey(0), _gaussian_batch(jax.random.PRNGKey(1), 8), c)
  eval_batch = _gaussian_batch(jax.random.PRNGKey(2), 2048)

  def eval_loss(s):
    return float(dtrain.loss_fn(s.params, s, eval_batch, jax.random.PRNGKey(3)))

  before = eval_loss(st)
  step = jax.jit(dtrain.make_multi_update(100, lambda k: _gaussian_batch(k)))
  for i in range(4):
    st, m = step(st, jax.random.PRNGKey(10 + i))
  after = eval_loss(st)
  assert int(st.step) == 400
  assert after < 0.6 * before, (before, after)
  # EMA parameters differ from the online ones but track them.
  assert not jax.tree.all(jax.tree.map(jnp.array_equal, st.params, st.ema_params))
  x = samplers.heun_sample(dtrain.denoiser(st), jax.random.PRNGKey(4), (2000, 4),
                           samplers.SamplerConfig(num_steps=32))
  np.testing.assert_allclose(np.asarray(x.mean(0)), [1.0, -1.0, 0.0, 2.0], atol=0.25)


def test_ema_every_n_steps():
  c = _tiny_config(ema_every=3, ema_decay=0.5, ema_warmup=False)
  batch = _gaussian_batch(jax.random.PRNGKey(1), 16)
  st = dtrain.init(jax.random.PRNGKey(0), batch, c)
  ema0 = st.ema_params
  upd = jax.jit(dtrain.update)
  st, _ = upd(st, batch, jax.random.PRNGKey(1))
  st, _ = upd(st, batch, jax.random.PRNGKey(2))
  assert jax.tree.all(jax.tree.map(jnp.array_equal, st.ema_params, ema0))  # steps 1, 2: no EMA
  st, _ = upd(st, batch, jax.random.PRNGKey(3))
  expect = jax.tree.map(lambda e, p: 0.5 * e + 0.5 * p, ema0, st.params)
  assert jax.tree.all(jax.tree.map(lambda a, b: jnp.allclose(a, b, atol=1e-6), st.ema_params,
                                   expect))


def test_learner_config_errors_and_pluggable_noise():
  c = _tiny_config()
  batch = _gaussian_batch(jax.random.PRNGKey(1), 32)
  st = dtrain.init(jax.random.PRNGKey(0), batch, c)
  with pytest.raises(ValueError, match="lr_schedule"):
    dtrain.make_optimizer(_tiny_config(lr_schedule="linear"))
  with pytest.raises(ValueError, match="noise_dist"):
    dtrain.hyper_from_config(_tiny_config(noise_dist="uniform"))
  with pytest.raises(ValueError, match="'x'"):
    dtrain.init(jax.random.PRNGKey(0), {"y": batch["x"]}, c)
  # DTQL's noise distribution plugs in.
  hp = dtrain.hyper_from_config(_tiny_config(noise_dist="truncated_loglogistic", sigma_data=0.5))
  s = dtrain.sigma_fn(hp)(jax.random.PRNGKey(0), (1000,))
  assert float(s.min()) >= edm.SIGMA_MIN and hp.sigma_data == 0.5


class _EmaPytorchReference:
  """ema-pytorch 0.2.5's EMA.update() logic, transcribed step for step, on numpy trees."""

  def __init__(self, params, beta, update_every, update_after_step, inv_gamma=1.0, power=2 / 3):
    self.ema = jax.tree.map(lambda p: np.asarray(p, np.float64), params)  # deepcopy of the model
    self.beta, self.every, self.after = beta, update_every, update_after_step
    self.inv_gamma, self.power = inv_gamma, power
    self.step, self.initted = 0, False

  def decay(self):
    epoch = max(self.step - self.after - 1, 0.0)
    value = 1 - (1 + epoch / self.inv_gamma) ** -self.power
    if epoch <= 0:
      return 0.0
    return min(max(value, 0.0), self.beta)

  def update(self, params):
    step = self.step
    self.step += 1
    if step % self.every != 0:
      return
    model = jax.tree.map(lambda p: np.asarray(p, np.float64), params)
    if step <= self.after:
      self.ema = model
      return
    if not self.initted:
      self.ema = model
      self.initted = True
    d = self.decay()
    self.ema = jax.tree.map(lambda e, p: e + (1 - d) * (p - e), self.ema, model)


@pytest.mark.parametrize("every,after,decay,steps", [(10, 100, 0.995, 145), (3, 20, 0.9, 70)])
def test_ema_warmup_follows_ema_pytorch(every, after, decay, steps):
  c = _tiny_config(ema_every=every, ema_update_after_step=after, ema_decay=decay)
  assert c.ema_warmup  # the default
  batch = _gaussian_batch(jax.random.PRNGKey(1), 16)
  st = dtrain.init(jax.random.PRNGKey(0), batch, c)
  ref = _EmaPytorchReference(st.params, decay, every, after)
  upd = jax.jit(dtrain.update)
  last_copy = (after // every + 1) * every + 1  # the first update past `after` also copies
  for t in range(1, steps + 1):
    prev = st.ema_params
    st, _ = upd(st, batch, jax.random.PRNGKey(t))
    ref.update(st.params)
    if (t - 1) % every:
      assert jax.tree.all(jax.tree.map(jnp.array_equal, st.ema_params, prev)), t
    elif t <= last_copy:  # warm-up: the EMA is the model
      assert jax.tree.all(jax.tree.map(jnp.array_equal, st.ema_params, st.params)), t
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5, atol=1e-6,
                                                         err_msg=f"step {t}"),
                 st.ema_params, ref.ema)
  # Past the warm-up copies the EMA lags the model.
  assert not jax.tree.all(jax.tree.map(jnp.array_equal, st.ema_params, st.params))
  hp = st.hp
  assert np.isclose(float(dtrain.ema_decay_at(jnp.asarray(after + 21), hp)), min(decay, 1 - 21**(-2 / 3)))
  assert float(dtrain.ema_decay_at(jnp.asarray(after + 1), hp)) == 0.0
  assert np.isclose(float(dtrain.ema_decay_at(jnp.asarray(10**6), hp)), decay)


def test_learner_defaults_are_the_official_ones():
  c = dtrain.get_config()
  assert c.ema_warmup is True and c.ema_update_after_step == 100 and c.ema_every == 10
  assert c.ema_decay == 0.995 and c.ema_inv_gamma == 1.0 and np.isclose(c.ema_power, 2 / 3)
  assert c.mask_mean_counted is False
  hp = dtrain.hyper_from_config(c)
  assert hp.ema_warmup and hp.ema_update_after_step == 100 and not hp.mask_mean_counted
  with pytest.raises(ValueError, match="ema_every"):
    dtrain.hyper_from_config(_tiny_config(ema_every=0))


def _ln64(a, axis):
  a = np.asarray(a, np.float64)
  m = a.mean(axis, keepdims=True)
  return (a - m) / np.sqrt(((a - m) ** 2).mean(axis, keepdims=True) + 1e-5)


def test_norm_layers_match_two_pass_torch_numerics():
  # Rows with |mean| / std ~ 300, as MixerUnet's temporal LayerNorm sees at initialisation.
  # flax's default one-pass variance is off by ~2e-2 here; two-pass (torch) by ~2e-5.
  b, h, d = 4, 32, 24
  x = 300.0 + jax.random.normal(jax.random.PRNGKey(0), (b, h, d, 1))
  emb = jnp.zeros((b, 32))
  blk = denoisers.MixerBlock(16)
  p = blk.init(jax.random.PRNGKey(1), x, emb)
  _, st = blk.apply(p, x, emb, capture_intermediates=True, mutable=["intermediates"])
  inter = st["intermediates"]
  refs = {"LayerNorm_0": _ln64(np.asarray(x).reshape(b, h, d), -1),  # feature LayerNorm
          "LayerNorm_1": _ln64(np.transpose(np.asarray(x), (0, 2, 3, 1)), -1)}  # temporal
  for name, ref in refs.items():
    out = np.asarray(inter[name]["__call__"][0], np.float64)
    assert np.max(np.abs(out - ref)) / np.max(np.abs(ref)) < 1e-4, name
  # Instance norm (affine GroupNorm, one channel per group) before the linear attention.
  y = 300.0 + jax.random.normal(jax.random.PRNGKey(2), (b, 8, d, 4))
  att = denoisers.AttentionResidual()
  pa = att.init(jax.random.PRNGKey(3), y)
  _, st = att.apply(pa, y, capture_intermediates=True, mutable=["intermediates"])
  out = np.asarray(st["intermediates"]["GroupNorm_0"]["__call__"][0], np.float64)
  ref = _ln64(np.asarray(y), (1, 2))
  assert np.max(np.abs(out - ref)) / np.max(np.abs(ref)) < 1e-4
  # Every norm layer of the torch mirrors uses torch's epsilon 1e-5 (flax: 1e-6) and two-pass
  # variance (a source check: flax modules cannot be inspected before they are bound).
  import inspect
  import re
  src = inspect.getsource(denoisers)
  calls = re.findall(r"nn\.(?:LayerNorm|GroupNorm|InstanceNorm|RMSNorm)\(([^()]*(?:\([^()]*\)[^()]*)*)\)",
                     src)
  # 2 in MixerBlock; the instance norm and the final GroupNorm once per MixerUnet
  # implementation (impl="conv" and impl="matmul" build them separately).
  assert len(calls) == 6, calls
  for args in calls:
    assert "epsilon=1e-5" in args and "use_fast_variance=False" in args, args


def test_learner_hp_leaves_injected_lr_and_a_vmapped_sweep_axis():
  """The learner follows the agent convention: float hyperparameters are leaves of `hp`, the
  learning rate a leaf of the optimiser state; two states differing only in them stack and vmap,
  and each row equals its own update. A config key the learner does not know is an error."""
  batch = {"x": _gaussian_batch(jax.random.PRNGKey(1), 16)["x"],
           "cond": jax.random.normal(jax.random.PRNGKey(2), (16, 1))}
  c = _tiny_config(cond_dropout=0.25, ema_warmup=False, ema_every=1)
  st = dtrain.init(jax.random.PRNGKey(0), batch, c)
  assert {"p_mean", "p_std", "cond_dropout", "ema_decay", "ema_power"} <= set(st.hp.leaf_names)
  assert {"sigma_data", "ema_every", "noise_dist", "use_cond_dropout"}.isdisjoint(
      st.hp.leaf_names) and st.hp.use_cond_dropout
  assert float(st.opt_state.hyperparams["learning_rate"]) == pytest.approx(c.learning_rate)
  other = dtrain.init(jax.random.PRNGKey(0), batch,
                      _tiny_config(cond_dropout=0.5, ema_warmup=False, ema_every=1,
                                   p_mean=0.3, ema_decay=0.5, learning_rate=1e-2))
  assert other.hp.static_key == st.hp.static_key
  leaves = [jax.tree.leaves(st), jax.tree.leaves(other)]
  both = jax.tree.unflatten(jax.tree.structure(st), [jnp.stack([a, b]) for a, b in zip(*leaves)])
  key = jax.random.PRNGKey(3)
  stacked, metrics = jax.jit(jax.vmap(dtrain.update, in_axes=(0, None, None)))(both, batch, key)
  for i, single in enumerate((st, other)):
    want, m = jax.jit(dtrain.update)(single, batch, key)
    np.testing.assert_allclose(np.asarray(metrics["loss"])[i], np.asarray(m["loss"]), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(stacked.ema_params), jax.tree.leaves(want.ema_params)):
      np.testing.assert_allclose(np.asarray(a)[i], np.asarray(b), rtol=1e-5, atol=1e-6)
  assert metrics["loss"][0] != metrics["loss"][1]
  bad = _tiny_config()
  bad.p_meen = 0.0
  with pytest.raises(ValueError, match="p_meen"):
    dtrain.hyper_from_config(bad)
  with pytest.raises(ValueError, match="cond_dropout"):
    dtrain.hyper_from_config(_tiny_config(cond_dropout=1.0))
