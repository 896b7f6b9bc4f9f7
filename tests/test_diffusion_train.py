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
  c = _tiny_config(ema_every=3, ema_decay=0.5)
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
    dtrain.hparams_from_config(_tiny_config(noise_dist="uniform"))
  with pytest.raises(ValueError, match="'x'"):
    dtrain.init(jax.random.PRNGKey(0), {"y": batch["x"]}, c)
  # DTQL's noise distribution plugs in.
  hp = dtrain.hparams_from_config(_tiny_config(noise_dist="truncated_loglogistic", sigma_data=0.5))
  s = hp.sigma_fn()(jax.random.PRNGKey(0), (1000,))
  assert float(s.min()) >= edm.SIGMA_MIN and hp.sigma_data == 0.5
