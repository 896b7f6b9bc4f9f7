"""Performance rewrites compute the same numbers as the code they replace (issue 17).

* DTQL acting: `make_act_fn` on `act_params` (key folded in inside the jit) == `act` on the whole
  state with the same folded key, for every policy / candidate setting; the parameters passed are
  only the policy (+ target Q with the max-Q trick).
* MixerUnet: `impl="matmul"` (convolutions as slices + matmuls, reassociated attention, MixerBlocks
  in one layout with the temporal MLP as batched matmuls and torch's erf GELU) has the parameter
  tree, initial values, outputs and gradients of `impl="conv"` (flax nn.Conv / nn.ConvTranspose
  / MixerBlock), on random inputs and random parameters; the same for one block alone.
* `evaluation.make_policy`: the pruned, key-folding jitted policy == `act` on the whole state.
* Diffusion EMA: the `lax.cond` version equals the former compute-and-select blend (to 2 ulp).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxaug.agents import dtql
from jaxaug.diffusion import train as dtrain
from jaxaug.envs import evaluation
from jaxaug.nets import denoisers
from jaxaug.types import EnvSpec

SPEC = EnvSpec(obs_dim=5, act_dim=2, max_action=1.0)


def _dtql_config(**overrides):
  c = dtql.get_config()
  c.denoiser_hidden_dim = 32
  c.policy_hidden_dims = (32, 32)
  c.critic_hidden_dims = (32, 32)
  for k, v in overrides.items():
    c[k] = v
  return c


@pytest.mark.parametrize("overrides,deterministic", [
    (dict(num_candidates=1), True),
    (dict(num_candidates=1), False),
    (dict(num_candidates=1, policy="implicit"), False),
    (dict(num_candidates=16), True),  # softmax selection: stochastic even when deterministic
    (dict(num_candidates=16, candidate_selection="argmax"), False),
])
def test_dtql_make_act_fn_equals_act(overrides, deterministic):
  state = dtql.init(jax.random.key(0), SPEC, _dtql_config(**overrides))
  # Move the target critic away from the online one so using the wrong Q would show.
  state = state.replace(target_critic_params=jax.tree.map(lambda x: x + 0.3,
                                                          state.target_critic_params))
  params = dtql.act_params(state)
  # "hp": the float hyperparameters acting reads (softmax temperature, implicit noise scale).
  hp_part = {"hp"} if (state.hp.policy == "implicit" or (
      state.hp.num_candidates > 1 and state.hp.candidate_selection == "softmax")) else set()
  if state.hp.num_candidates == 1:
    assert set(params) == {"policy"} | hp_part
  else:
    assert set(params) == {"policy", "q"} | hp_part
    assert params["q"] is state.target_critic_params["q"]
  fn = dtql.make_act_fn(state.hp, deterministic)
  assert dtql.make_act_fn(state.hp, deterministic) is fn  # cached: no recompilation per call
  obs = jax.random.normal(jax.random.key(1), (6, SPEC.obs_dim))
  key = jax.random.key(2)
  outs = []
  for step in (0, 5):
    ref = jax.jit(dtql.act, static_argnums=3)(state, obs, jax.random.fold_in(key, step),
                                              deterministic)
    got = fn(params, np.asarray(obs), key, step)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-6, atol=1e-6)
    outs.append(np.asarray(got))
    single = fn(params, obs[0], key, step)
    assert single.shape == (SPEC.act_dim,)
    np.testing.assert_allclose(np.asarray(single), np.asarray(ref[0]), rtol=1e-6, atol=1e-6)
  if not deterministic or state.hp.num_candidates > 1:
    assert not np.allclose(outs[0], outs[1])  # the step changes the key inside the jit
  assert fn._cache_size() == 2  # (6, obs) and (obs,): the step value does not recompile


def _perturbed(params, key, scale=0.1):
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return tree.unflatten([x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


@pytest.mark.parametrize("kwargs,shape", [
    (dict(dim=8, dim_mults=(1, 2, 4), cond_dim=1), (3, 16, 7)),
    (dict(dim=8, dim_mults=(1, 2), cond_dim=0, attention=False), (2, 8, 5)),
])
def test_mixer_unet_matmul_equals_conv(kwargs, shape):
  conv = denoisers.MixerUnet(**kwargs, impl="conv")
  mm = denoisers.MixerUnet(**kwargs)
  assert mm.impl == "matmul"  # the default
  b = shape[0]
  k = jax.random.key(0)
  x = jax.random.normal(k, shape)
  c_noise = jnp.linspace(-1.0, 1.0, b)
  cond = jax.random.normal(jax.random.key(1), (b, 1)) if kwargs["cond_dim"] else None
  use_cond = (jnp.arange(b) % 2).astype(jnp.float32) if kwargs["cond_dim"] else None
  p_conv = conv.init(k, x, c_noise, cond, use_cond)
  p_mm = mm.init(k, x, c_noise, cond, use_cond)
  # Same names, shapes and initial values: checkpoints of either load into the other.
  assert jax.tree_util.tree_structure(p_conv) == jax.tree_util.tree_structure(p_mm)
  for a, c in zip(jax.tree.leaves(p_conv), jax.tree.leaves(p_mm)):
    assert a.shape == c.shape and np.array_equal(np.asarray(a), np.asarray(c))
  params = _perturbed(p_conv, jax.random.key(2))  # random params (nonzero biases everywhere)
  y_conv = jax.jit(conv.apply)(params, x, c_noise, cond, use_cond)
  y_mm = jax.jit(mm.apply)(params, x, c_noise, cond, use_cond)
  assert y_mm.shape == x.shape
  np.testing.assert_allclose(np.asarray(y_mm), np.asarray(y_conv), rtol=1e-5,
                             atol=1e-5 * float(jnp.abs(y_conv).max()))

  def grads(net):
    loss = lambda p, xx: jnp.sum(jnp.sin(net.apply(p, xx, c_noise, cond, use_cond)))
    return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)

  g_conv, g_mm = grads(conv), grads(mm)
  # Per leaf, relative to the largest gradient entry of the whole tree (a bias feeding a
  # normalisation has a gradient that is zero up to rounding in both implementations).
  scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(g_conv))
  for a, c in zip(jax.tree.leaves(g_conv), jax.tree.leaves(g_mm)):
    np.testing.assert_allclose(np.asarray(c), np.asarray(a), rtol=1e-4, atol=1e-5 * scale)
  assert float(jnp.abs(g_conv[1]).max()) > 0  # the input gradient is compared too


def test_gelu_erf_equals_exact_gelu():
  """torch's exact-GELU formula x/2 (1 + erf(x / sqrt 2)) == jax.nn.gelu(approximate=False)
  (erfc form) to float32 rounding, values and derivatives, tails included."""
  x = jnp.linspace(-12.0, 12.0, 100_001)
  got, ref = np.asarray(denoisers.gelu_erf(x)), np.asarray(jax.nn.gelu(x, approximate=False))
  # erf form: 1 + erf(x / sqrt 2) cancels for x < 0, leaving a few ulp of 1 (< 1e-6) absolute.
  np.testing.assert_allclose(got, ref, rtol=4e-7, atol=1e-6)
  away = np.asarray(x) >= 0.0  # no cancellation: 2-3 ulp of the output
  np.testing.assert_allclose(got[away], ref[away], rtol=3e-7, atol=2e-7)
  g_got = np.asarray(jax.vmap(jax.grad(denoisers.gelu_erf))(x))
  g_ref = np.asarray(jax.vmap(jax.grad(lambda v: jax.nn.gelu(v, approximate=False)))(x))
  np.testing.assert_allclose(g_got, g_ref, rtol=1e-6, atol=5e-7)
  assert not np.allclose(got, np.asarray(jax.nn.gelu(x, approximate=True)), atol=1e-5)


@pytest.mark.parametrize("c_in,c_out", [(1, 16), (8, 8), (12, 4)])
def test_fused_mixer_block_equals_mixer_block(c_in, c_out):
  """The matmul implementation's block (one layout, batched temporal matmuls, LayerNorm over H
  in place) has MixerBlock's parameters and computes the same outputs and gradients, including
  on rows with |mean| / std ~ 300 (the two-pass variance must survive the rewrite)."""
  b, h, d = 3, 8, 5
  emb = jax.random.normal(jax.random.key(3), (b, 32))
  old, new = denoisers.MixerBlock(c_out), denoisers._MixerBlockFused(c_out)  # pylint: disable=protected-access
  for offset in (0.0, 300.0):
    x = offset + jax.random.normal(jax.random.key(4), (b, h, d, c_in))
    p_old, p_new = old.init(jax.random.key(5), x, emb), new.init(jax.random.key(5), x, emb)
    assert jax.tree_util.tree_structure(p_old) == jax.tree_util.tree_structure(p_new)
    for a, c in zip(jax.tree.leaves(p_old), jax.tree.leaves(p_new)):
      assert a.shape == c.shape and np.array_equal(np.asarray(a), np.asarray(c))
    params = _perturbed(p_old, jax.random.key(6))
    y_old, y_new = old.apply(params, x, emb), new.apply(params, x, emb)
    scale = float(jnp.abs(y_old).max())
    np.testing.assert_allclose(np.asarray(y_new), np.asarray(y_old), rtol=1e-5, atol=2e-6 * scale)
    loss = lambda m: (lambda p, v: jnp.sum(jnp.sin(m.apply(p, v, emb))))
    g_old = jax.grad(loss(old), argnums=(0, 1))(params, x)
    g_new = jax.grad(loss(new), argnums=(0, 1))(params, x)
    gs = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(g_old))
    for a, c in zip(jax.tree.leaves(g_old), jax.tree.leaves(g_new)):
      np.testing.assert_allclose(np.asarray(c), np.asarray(a), rtol=1e-4, atol=1e-5 * gs)


def test_mixer_unet_rejects_unknown_impl():
  net = denoisers.MixerUnet(dim=8, dim_mults=(1, 2), impl="cuda")
  with pytest.raises(ValueError, match="MixerUnet.impl"):
    net.init(jax.random.key(0), jnp.zeros((1, 8, 3)), jnp.zeros((1,)))


def _ema_select(ema_params, params, step, hp):
  """The former ema_update: the blend computed on every step, the old value selected."""
  if not hp.ema_warmup:
    decay = jnp.where((step % hp.ema_every) == 0, hp.ema_decay, 1.0)
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)
  before = step - 1
  do_ema = (before % hp.ema_every) == 0
  last_copy = (hp.ema_update_after_step // hp.ema_every + 1) * hp.ema_every
  copy = do_ema & (before <= last_copy)
  w = jnp.where(do_ema, 1.0 - dtrain.ema_decay_at(step, hp), 0.0)
  return jax.tree.map(lambda e, p: jnp.where(copy, p, e + w.astype(e.dtype) * (p - e)),
                      ema_params, params)


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_cond_equals_select(warmup):
  c = dtrain.get_config()
  c.ema_warmup = warmup
  c.ema_every = 10
  c.ema_update_after_step = 30
  c.ema_decay = 0.995
  hp = dtrain.hyper_from_config(c)
  tree = {"a": jnp.zeros((5, 3)), "b": {"c": jnp.ones((7,))}}

  def run(fn):
    @jax.jit
    def go(ema):
      def body(e, t):
        p = jax.tree.map(lambda x: x + jnp.sin(t + jnp.arange(x.size).reshape(x.shape)), tree)
        e = fn(e, p, t, hp)
        return e, e
      return jax.lax.scan(body, ema, jnp.arange(1, 121))[1]
    return go(tree)

  new, old = run(dtrain.ema_update), run(_ema_select)
  for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(old)):
    # Same formula; XLA may contract the blend into FMAs differently inside the cond branch
    # (seen with ema_warmup=False: 1-ulp differences), so allow 2 ulp.
    np.testing.assert_array_max_ulp(np.asarray(a), np.asarray(b), maxulp=2)
  # The EMA moves on exactly the update steps (and stays put in between).
  moved = np.any(np.diff(np.asarray(new["a"]), axis=0) != 0, axis=(1, 2))
  steps = np.arange(2, 121)
  expect = (steps - 1) % 10 == 0 if warmup else steps % 10 == 0
  np.testing.assert_array_equal(moved, expect)


@pytest.mark.parametrize("num_candidates", [1, 8])
def test_make_policy_equals_act_on_whole_state(num_candidates):
  state = dtql.init(jax.random.key(0), SPEC, _dtql_config(num_candidates=num_candidates))
  key = jax.random.key(4)
  leaves, treedef = jax.tree.flatten(state)
  obs = np.asarray(jax.random.normal(jax.random.key(1), (3, SPEC.obs_dim)))
  used = evaluation._used_leaf_indices(dtql.act, treedef, leaves, jnp.asarray(obs), key, False)
  # Only the acting parameters travel per step, not the optimiser states.
  expect = len(jax.tree.leaves(dtql.act_params(state)))
  assert len(used) == expect < len(leaves) // 4, (len(used), expect, len(leaves))
  policy = evaluation.make_policy(dtql.act, state, key, deterministic=False)
  act = jax.jit(dtql.act, static_argnums=3)
  for t in (1, 2, 3):
    got = np.asarray(policy(obs))
    ref = np.asarray(act(state, jnp.asarray(obs), jax.random.fold_in(key, t), False))
    np.testing.assert_array_equal(got, ref)
  # A later state of the same structure reuses the compiled function.
  later = state.replace(policy=state.policy.replace(
      params=jax.tree.map(lambda x: x * 1.5, state.policy.params)))
  policy2 = evaluation.make_policy(dtql.act, later, key, deterministic=False)
  np.testing.assert_array_equal(
      np.asarray(policy2(obs)), np.asarray(act(later, jnp.asarray(obs), jax.random.fold_in(key, 1),
                                               False)))
  assert evaluation._pruned_act.cache_info().hits >= 1


def test_bench_vs_reference_ratio_and_bad_reference(tmp_path):
  """The comparison script runs a row, reads a reference file and reports reference / jaxaug;
  a malformed reference file is refused with a message naming the flag."""
  import json
  import os
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  ref, out = tmp_path / "ref.json", tmp_path / "out.json"
  ref.write_text(json.dumps({"dtql_act_one_step": 2.0}))
  cmd = [sys.executable, os.path.join(root, "experiments", "bench_vs_reference.py"),
         "--only=dtql_act_one_step", "--rounds=1", "--act_inner=5", "--peak_n=256",
         f"--out={out}"]
  subprocess.run(cmd + [f"--reference={ref}"], check=True, capture_output=True, cwd=root,
                 timeout=600)
  (row,) = json.loads(out.read_text())["rows"]
  assert row["name"] == "dtql_act_one_step" and row["ms"] > 0
  assert row["reference_over_jaxaug"] == pytest.approx(2.0 / row["ms"])
  ref.write_text(json.dumps({"dtql_act_one_step": "fast"}))
  bad = subprocess.run(cmd + [f"--reference={ref}"], capture_output=True, text=True, cwd=root,
                       timeout=600)
  assert bad.returncode != 0 and "--reference" in bad.stderr
