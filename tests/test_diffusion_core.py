"""EDM core: preconditioning, noise distributions, samplers with exact denoisers, guidance."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxaug.diffusion import edm, guidance, samplers

MU = jnp.array([1.0, -2.0])
COV = jnp.array([[1.0, 0.6], [0.6, 0.5]])


def gaussian_denoiser(mu, cov):
  """E[x0 | x0 + sigma n = x] for x0 ~ N(mu, cov)."""

  def d(x, sigma, cond=None, use_cond=None):
    s2 = edm._expand(sigma, x)[..., None] ** 2  # (B, 1, 1)
    a = cov[None] @ jnp.linalg.inv(cov[None] + s2 * jnp.eye(2)[None])
    return mu + jnp.einsum("bij,bj->bi", a, x - mu)

  return d


def mixture_denoiser(mus, covs, weights):
  def d(x, sigma, cond=None, use_cond=None):
    s2 = edm._expand(sigma, x)[..., None] ** 2
    logps, means = [], []
    for mu, cov, w in zip(mus, covs, weights):
      c = cov[None] + s2 * jnp.eye(2)[None]
      diff = x - mu
      sol = jnp.linalg.solve(c, diff[..., None])[..., 0]
      logps.append(jnp.log(w) - 0.5 * jnp.sum(diff * sol, -1) - 0.5 * jnp.linalg.slogdet(c)[1])
      means.append(mu + jnp.einsum("bij,bj->bi", cov[None], sol))
    r = jax.nn.softmax(jnp.stack(logps, -1), -1)
    return jnp.einsum("bk,kbi->bi", r, jnp.stack(means))

  return d


def test_preconditioning_formulas():
  s, sd = jnp.array(0.7), 0.5
  assert jnp.allclose(edm.c_skip(s, sd), sd**2 / (s**2 + sd**2))
  assert jnp.allclose(edm.c_out(s, sd) * edm.c_in(s, sd) * jnp.sqrt(s**2 + sd**2), s * sd / jnp.sqrt(s**2 + sd**2))
  assert jnp.allclose(edm.loss_weight(s, sd), 1.0 / edm.c_out(s, sd) ** 2)
  # A zero network leaves D = c_skip x.
  d = edm.precondition(lambda x, c, *_: jnp.zeros_like(x), sigma_data=sd)
  x = jnp.ones((3, 2))
  assert jnp.allclose(d(x, jnp.full((3,), 0.7)), edm.c_skip(0.7, sd) * x)
  with pytest.raises(ValueError, match="sigma_data"):
    edm.precondition(lambda *a: a[0], sigma_data=0.0)


def test_noise_distributions():
  key = jax.random.PRNGKey(0)
  ln = jnp.log(edm.lognormal(key, (20000,)))
  assert abs(float(ln.mean()) + 1.2) < 0.05 and abs(float(ln.std()) - 1.2) < 0.05
  s = edm.truncated_loglogistic(key, (20000,))
  assert float(s.min()) >= 0.002 and float(s.max()) <= 80.0
  assert abs(float(jnp.median(s)) - 0.5) < 0.03  # median of the log-logistic is exp(loc)
  fn = edm.make_sigma_fn("lognormal", p_mean=0.0, p_std=0.1)
  assert abs(float(jnp.log(fn(key, (5000,))).mean())) < 0.01
  with pytest.raises(ValueError, match="unknown training noise"):
    edm.make_sigma_fn("uniform")


def test_edm_loss_mask_and_weighting():
  x0 = jnp.ones((8, 4))
  # Denoiser that is exactly right except on the last dimension (error 1 there).
  d = lambda x, s, c=None, u=None: x0 + jnp.array([0.0, 0.0, 0.0, 1.0])
  fixed = lambda k, shape: jnp.full(shape, 2.0)
  w = float(edm.loss_weight(2.0, 1.0))
  full = edm.edm_loss(d, x0, jax.random.PRNGKey(0), sigma_fn=fixed)
  assert np.isclose(float(full), w / 4)
  masked = edm.edm_loss(d, x0, jax.random.PRNGKey(0), sigma_fn=fixed,
                        mask=jnp.array([1.0, 1.0, 1.0, 0.0]))
  assert float(masked) == 0.0
  # Official GTA: masked entries count as zeros in a mean over ALL entries (w / 4 here, the error
  # sits on a counted entry); the mask_mean_counted switch averages over counted entries (w / 3).
  mask = jnp.array([1.0, 1.0, 0.0, 1.0])
  official = edm.edm_loss(d, x0, jax.random.PRNGKey(0), sigma_fn=fixed, mask=mask)
  assert np.isclose(float(official), w / 4)
  counted = edm.edm_loss(d, x0, jax.random.PRNGKey(0), sigma_fn=fixed, mask=mask,
                         mask_mean_counted=True)
  assert np.isclose(float(counted), w / 3)


def test_schedule_and_partial_table():
  s = samplers.edm_sigmas(128)
  assert np.isclose(float(s[0]), 80.0) and np.isclose(float(s[127]), 0.002, rtol=1e-4)
  assert float(s[128]) == 0.0
  table = {0.1: (0.015, 13), 0.25: (0.157, 32), 0.5: (2.43, 64), 0.75: (17.3, 96), 1.0: (80, 128)}
  for mu, (sig, steps) in table.items():
    k = samplers.partial_start_index(128, mu)
    assert 128 - k == steps
    assert np.isclose(float(s[k]), sig, rtol=0.02), (mu, float(s[k]))
  assert samplers.num_evaluations(samplers.SamplerConfig()) == 255
  with pytest.raises(ValueError, match="noising_ratio"):
    samplers.partial_start_index(128, 1.5)


def _check_moments(x, mu, cov, tol_mean=0.06, tol_cov=0.08):
  x = np.asarray(x)
  assert np.all(np.isfinite(x))
  np.testing.assert_allclose(x.mean(0), np.asarray(mu), atol=tol_mean)
  np.testing.assert_allclose(np.cov(x.T), np.asarray(cov), atol=tol_cov)


@pytest.mark.parametrize("deterministic", [False, True])
def test_heun_reproduces_gaussian(deterministic):
  # Churn with few steps has a visible discretisation error (~10% on the covariance at N=32);
  # the paper's N=128 is within ~2%.
  cfg = samplers.SamplerConfig(num_steps=32 if deterministic else 128)
  d = gaussian_denoiser(MU, COV)
  fn = samplers.deterministic_sample if deterministic else samplers.heun_sample
  x = jax.jit(lambda k: fn(d, k, (6000, 2), cfg))(jax.random.PRNGKey(1))
  _check_moments(x, MU, COV)


def test_heun_reproduces_mixture():
  mus = [jnp.array([-2.0, 0.0]), jnp.array([2.0, 1.0])]
  covs = [0.3 * jnp.eye(2), jnp.array([[0.5, 0.2], [0.2, 0.4]])]
  w = [0.3, 0.7]
  mean = w[0] * mus[0] + w[1] * mus[1]
  cov = sum(wi * (c + jnp.outer(m, m)) for wi, m, c in zip(w, mus, covs)) - jnp.outer(mean, mean)
  cfg = samplers.SamplerConfig(num_steps=128)
  d = mixture_denoiser(mus, covs, w)
  x = jax.jit(lambda k: samplers.heun_sample(d, k, (6000, 2), cfg))(jax.random.PRNGKey(2))
  _check_moments(x, mean, cov, 0.08, 0.12)
  # Mode weights: share of samples nearer the right mode.
  frac = float(jnp.mean(x[:, 0] > 0))
  assert abs(frac - 0.7) < 0.03


def test_partial_noise_keeps_distribution_and_small_ratio_keeps_input():
  d = gaussian_denoiser(MU, COV)
  cfg = samplers.SamplerConfig(num_steps=128)
  x_real = jax.random.multivariate_normal(jax.random.PRNGKey(3), MU, COV, (6000,))
  out = jax.jit(lambda k: samplers.from_partial_noise(d, k, x_real, 0.5, cfg))(jax.random.PRNGKey(4))
  _check_moments(out, MU, COV)
  moved = float(jnp.mean(jnp.abs(out - x_real)))
  assert moved > 0.1  # mu = 0.5 really changes the samples
  # mu -> 0: k = N, no steps at all: the input comes back exactly.
  same = samplers.from_partial_noise(d, jax.random.PRNGKey(5), x_real, 0.0, cfg)
  assert jnp.array_equal(same, x_real)
  # Small mu (one step from sigma_min) returns the input up to ~sigma_min.
  cfg128 = samplers.SamplerConfig()
  near = samplers.from_partial_noise(d, jax.random.PRNGKey(5), x_real, 0.005, cfg128)
  assert float(jnp.max(jnp.abs(near - x_real))) < 0.02


def _fake_conditional(calls):
  def d(x, sigma, cond, use_cond):
    calls.append(x.shape[0])
    u = use_cond[:, None]
    return u * cond + (1 - u) * (-1.0) * jnp.ones_like(x)
  return d


@pytest.mark.parametrize("w,expected", [(0.0, -1.0), (1.0, None), (2.0, "2c+1"), (0.5, "mid")])
def test_guidance_weight_semantics(w, expected):
  calls = []
  g = guidance.cfg(_fake_conditional(calls), w)
  x = jnp.zeros((5, 3))
  c = jnp.arange(5.0)[:, None] * jnp.ones((5, 3))
  out = g(x, jnp.ones((5,)), c)
  assert len(calls) == 1  # one network call in every case
  if w in (0.0, 1.0):
    assert calls == [5]  # the irrelevant pass is skipped
  else:
    assert calls == [10]  # conditional + unconditional in one batch
  if expected == -1.0:
    assert jnp.allclose(out, -1.0)
  elif expected is None:
    assert jnp.allclose(out, c)
  elif expected == "2c+1":
    assert jnp.allclose(out, 2 * c + 1)
  else:
    assert jnp.allclose(out, 0.5 * (c - 1))


def test_guided_heun_uses_guidance_in_both_stages():
  # Exact denoisers of two Gaussians as the "conditional" and "unconditional" models; w = 1 must
  # sample the conditional one exactly, w = 0 the unconditional one.
  d_c = gaussian_denoiser(MU, COV)
  d_u = gaussian_denoiser(jnp.zeros(2), jnp.eye(2))

  def both(x, s, cond, use_cond):
    u = use_cond[:, None]
    return u * d_c(x, s) + (1 - u) * d_u(x, s)

  cfg = samplers.SamplerConfig(num_steps=128)
  for w, (mu, cov) in [(1.0, (MU, COV)), (0.0, (jnp.zeros(2), jnp.eye(2)))]:
    x = samplers.heun_sample(guidance.cfg(both, w), jax.random.PRNGKey(6), (6000, 2), cfg,
                             cond=jnp.zeros((6000, 1)))
    _check_moments(x, mu, cov)


def test_condition_dropout_rate():
  m = guidance.drop_condition(jax.random.PRNGKey(0), 20000, 0.25)
  assert abs(float(m.mean()) - 0.75) < 0.02
  with pytest.raises(ValueError):
    guidance.drop_condition(jax.random.PRNGKey(0), 4, 1.0)


def test_churn_off_sampler_does_not_depend_on_the_key_under_jit():
  # gamma = 0: the churn noise must be multiplied by exactly 0. sqrt(max(s_hat^2 - s^2, 0)) is not
  # 0 under jit once XLA fuses it into a multiply-add (2.4e-5 key dependence here before the fix).
  d = lambda x, s, c=None, u=None: 0.5 * x + 0.1 * jnp.tanh(x)
  x = jnp.linspace(-3.0, 3.0, 40).reshape(20, 2) * 80.0
  for cfg in [samplers.SamplerConfig(num_steps=16, s_churn=0.0),
              samplers.SamplerConfig(num_steps=16).deterministic()]:
    f = jax.jit(lambda k, cfg=cfg: samplers.sample_from(d, k, x, 0, cfg))
    a, b = f(jax.random.PRNGKey(0)), f(jax.random.PRNGKey(1))
    assert jnp.array_equal(a, b), float(jnp.max(jnp.abs(a - b)))
  # With churn on, the key matters (the test can tell the two apart).
  f = jax.jit(lambda k: samplers.sample_from(d, k, x, 0, samplers.SamplerConfig(num_steps=16)))
  assert not jnp.array_equal(f(jax.random.PRNGKey(0)), f(jax.random.PRNGKey(1)))


def _toy_conditional(x, sigma, cond, use_cond):
  """A nonlinear denoiser whose conditional and unconditional outputs differ."""
  s = edm._expand(sigma, x)
  u = edm._expand(use_cond, x)
  base = jnp.tanh(x) * s / (1.0 + s)
  return base + u * 0.3 * cond + (1.0 - u) * (-0.7) / (1.0 + s)


def _reference_guided_chain(x, cond, sigmas, w, guide_correction):
  """Hand-written Heun chain (no churn) with classifier-free guidance, float64 numpy."""
  x = np.asarray(x, np.float64)
  c = np.asarray(cond, np.float64)

  def den(xx, s, use):
    return np.tanh(xx) * s / (1 + s) + use * 0.3 * c + (1 - use) * (-0.7) / (1 + s)

  def guided(xx, s):
    return den(xx, s, 0.0) + w * (den(xx, s, 1.0) - den(xx, s, 0.0))

  for s, s_next in zip(sigmas[:-1], sigmas[1:]):
    d = (x - guided(x, s)) / s
    x_eul = x + (s_next - s) * d
    if s_next == 0:
      x = x_eul
      continue
    if guide_correction:
      d2_den = guided(x_eul, s_next)
    else:  # official: the correction uses the conditional output (unconditional at w = 0)
      d2_den = den(x_eul, s_next, 0.0 if w == 0 else 1.0)
    x = x + 0.5 * (s_next - s) * (d + (x_eul - d2_den) / s_next)
  return x


@pytest.mark.parametrize("guide_correction", [False, True])
@pytest.mark.parametrize("w", [0.0, 0.5, 1.0, 2.0])
def test_guided_sampler_matches_hand_written_reference(w, guide_correction):
  cfg = samplers.SamplerConfig(num_steps=6, s_churn=0.0, guide_correction=guide_correction)
  x = jax.random.normal(jax.random.PRNGKey(0), (7, 3)) * 3.0
  cond = jnp.linspace(-1.0, 1.0, 7)[:, None] * jnp.ones((7, 3))
  start = 2
  out = jax.jit(lambda k: samplers.sample_from(_toy_conditional, k, x, start, cfg, cond,
                                               guidance_scale=w))(jax.random.PRNGKey(1))
  sig = np.asarray(samplers.edm_sigmas(6), np.float64)[start:]
  ref = _reference_guided_chain(x, cond, sig, w, guide_correction)
  np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-5, atol=1e-5)
  # The two modes really differ at w = 2 (the reference above can tell them apart).
  if w == 2.0:
    other = _reference_guided_chain(x, cond, sig, w, not guide_correction)
    assert np.max(np.abs(other - ref)) > 1e-3  # 100x the tolerance above


@pytest.mark.parametrize("guide_correction,w,expected", [
    (False, 2.0, 11), (False, 1.0, 11), (False, 0.0, 11),  # 3n - 1, n = 4
    (True, 2.0, 14), (True, 1.0, 7), (True, 0.0, 7),  # 2 (2n - 1); one pass at w in {0, 1}
    (False, None, 7)])
def test_guided_evaluation_counts(guide_correction, w, expected):
  cfg = samplers.SamplerConfig(num_steps=8, guide_correction=guide_correction)
  rows = []

  def d(x, s, cond, use_cond):
    rows.append(x.shape[0])
    return 0.5 * x

  b = 3
  with jax.disable_jit():  # scan runs step by step, so every call is seen
    samplers.from_partial_noise(d, jax.random.PRNGKey(0), jnp.zeros((b, 2)), 0.5, cfg,
                                cond=jnp.zeros((b, 1)), guidance_scale=w)
  assert sum(rows) == expected * b
  assert samplers.num_evaluations(cfg, 0.5, w) == expected
  # The paper setting: 128 steps, mu = 0.5 (64 steps): 191 official, 254 with guide_correction.
  assert samplers.num_evaluations(samplers.SamplerConfig(), 0.5, 2.0) == 191
  assert samplers.num_evaluations(samplers.SamplerConfig(guide_correction=True), 0.5, 2.0) == 254


def test_sampling_condition_dropout_official_and_switch():
  from jaxaug.train.config import generator_base_config

  def d(x, s, cond, use_cond):
    return jnp.broadcast_to(edm._expand(use_cond, x), x.shape)

  cond = jnp.ones((20000, 1))
  x = jnp.zeros((20000, 1))
  for p, mean in [(0.25, 0.75), (0.0, 1.0)]:
    cfg = samplers.SamplerConfig(num_steps=2, cond_dropout=p)
    first, second = samplers._stages(d, cfg, cond, 1.0)
    s = jnp.ones((20000,))
    # Official mode at w = 1: the Euler estimate is d_u + (d_c - d_u) = the (dropped) mask.
    assert abs(float(first(x, s, jax.random.PRNGKey(0)).mean()) - mean) < 0.01
    assert abs(float(second(x, s, jax.random.PRNGKey(1)).mean()) - mean) < 0.01
  # Config: official default keeps the training dropout; the switch turns it off.
  c, _ = generator_base_config("gta", 10, 10)
  c.diffusion.cond_dropout = 0.25
  assert c.sampler.guide_correction is False and c.sampler.no_sampling_dropout is False
  assert samplers.sampler_config(c).cond_dropout == 0.25
  assert samplers.sampler_config(c).guide_correction is False
  c.sampler.no_sampling_dropout = True
  c.sampler.guide_correction = True
  assert samplers.sampler_config(c).cond_dropout == 0.0
  assert samplers.sampler_config(c).guide_correction is True
  with pytest.raises(ValueError, match="cond_dropout"):
    samplers.SamplerConfig(cond_dropout=1.0)
  with pytest.raises(ValueError, match="condition"):
    samplers.sample_from(d, jax.random.PRNGKey(0), x, 0, cfg, None, guidance_scale=2.0)


def test_full_noising_ratio_starts_from_pure_noise():
  # Official: mu = 1 starts at sigma_max * eps without the real data (not x_real + sigma_max eps).
  d = gaussian_denoiser(MU, COV)
  cfg = samplers.SamplerConfig(num_steps=8)
  a = samplers.from_partial_noise(d, jax.random.PRNGKey(3), jnp.full((5, 2), 30.0), 1.0, cfg)
  b = samplers.from_partial_noise(d, jax.random.PRNGKey(3), jnp.zeros((5, 2)), 1.0, cfg)
  c = samplers.heun_sample(d, jax.random.PRNGKey(3), (5, 2), cfg)
  assert jnp.array_equal(a, b)
  np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-5, atol=1e-5)
