"""Policy evaluation over a gymnasium vector environment.

One sub-environment per episode: episode i runs in a sub-env reset with seed + i and only its
first episode counts, so the result depends on (policy, env_id, num_episodes, seed) alone. The
episodes run in chunks of at most `max_envs_in_memory` sub-environments (each chunk's envs are
closed before the next is built): a FrankaKitchen env holds ~56 MB (meshes, textures) beyond
~240 MB the first one loads, so DTQL's 100 Kitchen episodes at once needed ~5.8 GB. The policy sees a whole chunk's
(chunk, obs_dim) batch every step, so a jitted policy compiles once per chunk size (at most two).
"""

from __future__ import annotations

import functools
import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxaug.envs import suites
from jaxaug.envs.registry import episode_scores, make_vector_env, resolve_env_id

# Default cap on simultaneous evaluation sub-envs per suite (None: every episode at once).
# Kitchen: ~56 MB per env; 10 keeps an evaluation near 0.8 GB (docs/suites.md, measured). The others are a few MB each,
# and running all episodes as one batch makes one policy call per step instead of one per chunk.
MAX_ENVS_IN_MEMORY = {"kitchen": 10}


def default_max_envs(env_id: str) -> int | None:
  """The default `max_envs_in_memory` of an environment (MAX_ENVS_IN_MEMORY by suite)."""
  env_id = resolve_env_id(env_id)
  if suites.is_suite_env(env_id):
    return MAX_ENVS_IN_MEMORY.get(suites.suite_env(env_id).suite)
  return None


def evaluate(policy_fn: Callable[[Any], Any], env_id: str, num_episodes: int, seed: int,
             obs_stats: Any = None, max_steps: int | None = None,
             max_envs_in_memory: int | None = -1) -> dict[str, float]:
  return evaluate_groups(policy_fn, env_id, num_episodes, [seed], obs_stats, max_steps,
                         max_envs_in_memory)[0]


def evaluate_groups(policy_fn: Callable[[Any], Any], env_id: str, num_episodes: int,
                    seeds, obs_stats: Any = None, max_steps: int | None = None,
                    max_envs_in_memory: int | None = -1) -> list[dict[str, float]]:
  """Runs `num_episodes` episodes and returns raw and normalised return statistics.

  Args:
    policy_fn: maps a float32 (n, obs_dim) batch to actions (n, act_dim), n = the chunk size.
      `make_policy(agent.act, state, key)` builds one for any agent (one small jitted call per
      step); otherwise pass a function that calls a jitted function (e.g. `lambda o: act(state,
      o)` with a module-level `jax.jit`ted `act`); wrapping a fresh closure in `jax.jit` on
      every call would recompile every evaluation.
    env_id: any name `resolve_env_id` accepts.
    num_episodes: number of sub-environments = episodes.
    seed: sub-env i is reset with seed + i.
    obs_stats: optional object with `.normalize(x)`, applied to observations before the policy.
    max_steps: optional safety cap on vector steps (default: the env's time limit + 1).
    max_envs_in_memory: most sub-environments alive at once; episodes run in chunks of this
      size, episode i still reset with seed + i. None: all at once; -1 (default): the env's
      default (`default_max_envs`: 10 for Kitchen, else all at once). A deterministic policy
      gives the same result for every chunk size (a stochastic one sees other keys per call).

  Returns:
    dict with return_mean, return_std, return_min, return_max, normalized_score_mean,
    normalized_score_std, length_mean, num_episodes, success_rate. The score is the one the
    papers report for the env (registry.episode_scores): D4RL-normalised return, or 100 x
    success for Meta-World; an episode succeeds when any step's info has a true 'success'.

  `evaluate_groups(policy_fn, env_id, num_episodes, seeds, ...)` evaluates G = len(seeds)
  groups (e.g. the points of a sweep) in ONE vector env of G x num_episodes sub-envs: episode i
  of group g is reset with seeds[g] + i, `policy_fn` gets the observations group-major, and the
  result is one dict per group, each equal to `evaluate(..., seed=seeds[g])` of that group's
  policy.
  """
  if num_episodes < 1:
    raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
  groups = len(seeds)
  episode_seeds = [int(s) + i for s in seeds for i in range(num_episodes)]
  num_episodes_per_group, num_episodes = num_episodes, num_episodes * groups
  env_id = resolve_env_id(env_id)
  if max_envs_in_memory == -1:
    max_envs_in_memory = default_max_envs(env_id)
  if max_envs_in_memory is None:
    max_envs_in_memory = num_episodes
  if (isinstance(max_envs_in_memory, bool) or not isinstance(max_envs_in_memory, numbers.Integral)
      or max_envs_in_memory < 1):
    raise ValueError(f"max_envs_in_memory must be a positive integer, None or -1 (the env's "
                     f"default), got {max_envs_in_memory!r}")
  chunk = min(int(max_envs_in_memory), num_episodes)
  returns = np.zeros(num_episodes, np.float64)
  lengths = np.zeros(num_episodes, np.int64)
  success = np.zeros(num_episodes, bool)
  for start in range(0, num_episodes, chunk):
    part = slice(start, min(start + chunk, num_episodes))
    r, n, s = _run_chunk(policy_fn, env_id, episode_seeds[part], obs_stats, max_steps)
    returns[part], lengths[part], success[part] = r, n, s
  scores = episode_scores(env_id, returns, success)
  out = []
  for g in range(groups):
    part = slice(g * num_episodes_per_group, (g + 1) * num_episodes_per_group)
    ret, sc, ln, su = returns[part], np.asarray(scores)[part], lengths[part], success[part]
    out.append({
        "return_mean": float(ret.mean()),
        "return_std": float(ret.std()),
        "return_min": float(ret.min()),
        "return_max": float(ret.max()),
        "normalized_score_mean": float(np.mean(sc)),
        "normalized_score_std": float(np.std(sc)),
        "length_mean": float(ln.mean()),
        "num_episodes": int(num_episodes_per_group),
        "success_rate": float(su.mean()),
    })
  return out


def _run_chunk(policy_fn, env_id: str, seeds: list[int], obs_stats, max_steps):
  """Episodes of len(seeds) sub-envs (sub-env i reset with seeds[i]); closes them before
  returning."""
  num = len(seeds)
  envs = make_vector_env(env_id, num)
  try:
    obs, _ = envs.reset(seed=[int(x) for x in seeds])
    limit = max_steps or (envs.envs[0].spec.max_episode_steps or 1000) + 1
    returns = np.zeros(num, np.float64)
    lengths = np.zeros(num, np.int64)
    active = np.ones(num, bool)
    success = np.zeros(num, bool)
    for _ in range(limit):
      x = np.asarray(obs, np.float32)
      if obs_stats is not None:
        x = obs_stats.normalize(x)
      actions = np.asarray(policy_fn(x), np.float64)
      obs, rewards, terminated, truncated, infos = envs.step(actions)
      returns += np.where(active, rewards, 0.0)
      if "success" in infos:
        success |= active & np.asarray(infos["success"], bool)
      lengths += active
      active &= ~(terminated | truncated)
      if not active.any():
        break
  finally:
    envs.close()
  return returns, lengths, success


def _used_leaf_indices(act_fn, treedef, leaves, obs, key, deterministic) -> tuple[int, ...]:
  """Indices of the state leaves `act_fn` reads (traced once; an optimiser state is unused)."""
  def f(lv, o, k):
    return act_fn(jax.tree.unflatten(treedef, lv), o, k, deterministic)

  jaxpr = jax.make_jaxpr(f)(leaves, obs, key).jaxpr
  read = {id(v) for eqn in jaxpr.eqns for v in eqn.invars if not hasattr(v, "val")}
  read |= {id(v) for v in jaxpr.outvars if not hasattr(v, "val")}
  return tuple(i for i, v in enumerate(jaxpr.invars[:len(leaves)]) if id(v) in read)


@functools.lru_cache(maxsize=64)
def _pruned_act(act_fn, treedef, used, unused_avals, deterministic):
  """jit of (used leaves, obs, key, step) -> act_fn(state, obs, fold_in(key, step))."""
  n = len(used) + len(unused_avals)

  @jax.jit
  def fn(used_leaves, obs, key, step):
    full = [None] * n
    for i, leaf in zip(used, used_leaves):
      full[i] = leaf
    rest = iter(unused_avals)
    for i in range(n):
      if full[i] is None:  # never read by act_fn: a placeholder XLA drops
        shape, dtype = next(rest)
        full[i] = jnp.zeros(shape, dtype)
    state = jax.tree.unflatten(treedef, full)
    return act_fn(state, obs, jax.random.fold_in(key, step), deterministic)

  return fn


def make_policy(act_fn: Callable, state: Any, key: jax.Array, deterministic: bool = True
                ) -> Callable[[Any], Any]:
  """A `policy_fn` for `evaluate` from an agent's `act(state, obs, key, deterministic)`.

  Call t (1, 2, ...) returns act(state, obs, fold_in(key, t), deterministic), computed as ONE
  jitted call that receives only the leaves of `state` act reads (found by tracing once) and
  folds the key in inside the jit. Passing a whole training state (optimiser moments, target
  networks: ~160 leaves for DTQL) and an eager `fold_in` per environment step cost more than the
  policy itself at small batches (docs/performance.md). The compiled function is cached per
  (act_fn, state structure, deterministic), so evaluating a later state does not recompile.
  """
  leaves, treedef = jax.tree.flatten(state)
  holder: dict[str, Any] = {"t": 0}

  def policy(obs):
    obs = jnp.asarray(obs, jnp.float32)
    if "fn" not in holder:
      used = _used_leaf_indices(act_fn, treedef, leaves, obs, key, deterministic)
      unused = tuple((tuple(np.shape(x)), jnp.result_type(x)) for i, x in enumerate(leaves)
                     if i not in used)
      holder["fn"] = _pruned_act(act_fn, treedef, used, unused, deterministic)
      holder["args"] = [leaves[i] for i in used]
    holder["t"] += 1
    return holder["fn"](holder["args"], obs, key, holder["t"])

  return policy
