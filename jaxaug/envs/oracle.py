"""MuJoCo state oracle: true next observation, reward and termination for any (s, a).

GTA's data-quality metrics (GTA paper, Sec. 5.1 and App. D) query "the true dynamic model of the
environment" with generated states and actions. For the gymnasium v5 locomotion environments we
rebuild the simulator state from the observation and step MuJoCo exactly as `env.step` does:

* Observation layouts: Hopper/Walker2d `[qpos[1:], clip(qvel, -10, 10)]`, HalfCheetah
  `[qpos[1:], qvel]`, Ant (include_cfrc_ext_in_observation=False) `[qpos[2:], qvel]`. The root
  x (and y for Ant) is not observed; we set it to 0. Physics (an infinite ground plane) and the
  rewards (a displacement, x_after - x_before) do not depend on it.
* A Hopper/Walker2d row with a velocity at the clip bound (|v| >= 10 - clip_atol) cannot be
  rebuilt (the true velocity is anything beyond 10): it is masked, not simulated. Non-finite
  rows are masked too, and so are rows the simulator flags as unstable (MuJoCo warnings: bad
  qpos/qvel/qacc, after which it silently resets the state).
* When a dataset carries the true simulator state (infos/qpos, infos/qvel), pass it instead of
  rebuilding from observations: no masking by clipping then.
* Rewards follow gymnasium v5's `_get_rew` term by term (forward, healthy, control and, for
  Ant, contact cost), with the env instance's own weights and ranges, and terminations its
  `is_healthy`. The result equals `env.set_state(qpos, qvel); env.step(a)` (tests check it).
  Each row starts from a fresh solver warm start (qacc_warmstart = 0), so results do not depend
  on row order; a running episode differs from that by ~1e-8 to 1e-7 in the next state.
* Ant caveat: gymnasium's Ant measures forward progress with the torso's `xpos`, which after an
  RK4 `mj_step` belongs to an intermediate stage of the last substep. Inside a running episode,
  `xpos_before` is therefore that stale value from the previous step (a function of the previous
  state and action, not of s), while after `set_state` it is the torso position of s. We use the
  latter, the only choice that is a function of (s, a); inside an episode the two differ by
  ~1e-4-3e-3 in reward. Hopper, Walker2d and HalfCheetah use qpos[0] and match exactly.

Backends: 'batch' (mujoco 4's `mujoco.batch.Batch`: many simulations stepped on a thread pool,
bit-identical to a Python loop), 'rollout' (`mujoco.rollout`), and 'loop' (a Python loop over one
MjData, the fallback). Ant always uses 'loop': its contact cost needs `mj_rnePostConstraint`
on the data the last substep leaves behind, which neither batched API runs or exposes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any, Iterator

import gymnasium as gym
import mujoco
import numpy as np

from jaxaug.envs.registry import ENV_KWARGS, resolve_env_id

BACKENDS = ("auto", "batch", "rollout", "loop")


@dataclasses.dataclass(frozen=True)
class ObsLayout:
  """How an environment's observation is made from (qpos, qvel)."""

  skipped_qpos: int  # leading qpos entries (root x, y) that the observation leaves out
  vel_clip: float | None  # observation clips qvel to +-vel_clip (None: no clipping)


LAYOUTS: dict[str, ObsLayout] = {
    "Hopper-v5": ObsLayout(skipped_qpos=1, vel_clip=10.0),
    "Walker2d-v5": ObsLayout(skipped_qpos=1, vel_clip=10.0),
    "HalfCheetah-v5": ObsLayout(skipped_qpos=1, vel_clip=None),
    "Ant-v5": ObsLayout(skipped_qpos=2, vel_clip=None),
}

# mjtWarning entries that mean the simulation diverged (MuJoCo then resets the state).
_UNSTABLE_WARNINGS = (mujoco.mjtWarning.mjWARN_BADQPOS, mujoco.mjtWarning.mjWARN_BADQVEL,
                      mujoco.mjtWarning.mjWARN_BADQACC)


@dataclasses.dataclass
class OracleStep:
  """The simulator's answer for N rows (float64). Rows with valid=False hold NaN."""

  next_observations: np.ndarray  # (N, obs_dim)
  rewards: np.ndarray  # (N,)
  terminals: np.ndarray  # (N,) bool
  next_qpos: np.ndarray  # (N, nq)
  next_qvel: np.ndarray  # (N, nv)
  valid: np.ndarray  # (N,) bool: simulated and trustworthy
  clipped: np.ndarray  # (N,) bool: masked because a velocity sat at the clip bound
  nonfinite: np.ndarray  # (N,) bool: masked because the input was not finite
  unstable: np.ndarray  # (N,) bool: masked because MuJoCo flagged the simulation unstable
  reward_terms: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

  @property
  def n_valid(self) -> int:
    return int(self.valid.sum())

  @property
  def n_masked(self) -> int:
    return int((~self.valid).sum())


@contextlib.contextmanager
def _captured_mujoco_warnings() -> Iterator[list[str]]:
  """Routes MuJoCo's user warnings into a list (no stderr, no MUJOCO_LOG.TXT in the cwd).

  Generated states can be wildly unphysical; MuJoCo would print and log every divergence. The
  previous handler is restored afterwards.
  """
  messages: list[str] = []
  previous = mujoco.get_mju_user_warning()
  mujoco.set_mju_user_warning(lambda msg: messages.append(str(msg)))
  try:
    yield messages
  finally:
    mujoco.set_mju_user_warning(previous)


def _as_2d(x, name: str, dim: int, n: int | None = None) -> np.ndarray:
  x = np.asarray(x, np.float64)
  if x.ndim == 1:
    x = x[None]
  if x.ndim != 2 or x.shape[1] != dim:
    raise ValueError(f"{name}: expected shape (N, {dim}), got {np.shape(x)}")
  if n is not None and x.shape[0] != n:
    raise ValueError(f"{name}: expected {n} rows (as the observations), got {x.shape[0]}")
  return x


class StateOracle:
  """Steps the MuJoCo model of one gymnasium v5 locomotion env from arbitrary states.

  Args:
    env_id: 'Hopper-v5', 'hopper-medium-v2', 'halfcheetah', ... (see registry.resolve_env_id).
    backend: 'auto' (batch, or loop for Ant), 'batch', 'rollout' or 'loop'.
    nthread: threads for the batched backends (0: all CPUs).
    chunk: rows simulated per batched call (bounds memory).
    clip_atol: a Hopper/Walker2d velocity with |v| >= vel_clip - clip_atol counts as clipped.
    env_kwargs: extra gymnasium.make kwargs (reward weights, ranges, frame_skip ...); the oracle
      reads weights and ranges from the env instance, so they follow.
  """

  def __init__(self, env_id: str, backend: str = "auto", nthread: int = 1, chunk: int = 4096,
               clip_atol: float = 1e-5, **env_kwargs: Any):
    self.env_id = resolve_env_id(env_id)
    if backend not in BACKENDS:
      raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if self.env_id == "Ant-v5" and backend in ("batch", "rollout"):
      raise ValueError("Ant-v5 needs backend 'loop' (its contact cost needs "
                       "mj_rnePostConstraint after each step, which the batched APIs do not run)")
    if backend == "auto":
      backend = "loop" if self.env_id == "Ant-v5" else "batch"
    self.backend = backend
    self.nthread = int(nthread)
    self.chunk = int(chunk)
    self.clip_atol = float(clip_atol)
    self.layout = LAYOUTS[self.env_id]
    kwargs = {**ENV_KWARGS[self.env_id], **env_kwargs}
    with _captured_mujoco_warnings():  # HalfCheetah's XML warns about 'settotalmass'
      self.env = gym.make(self.env_id, **kwargs).unwrapped
    self.model = self.env.model
    self.nq, self.nv, self.nu = int(self.model.nq), int(self.model.nv), int(self.model.nu)
    self.frame_skip = int(self.env.frame_skip)
    self.dt = float(self.env.dt)
    self.obs_dim = int(self.env.observation_space.shape[0])
    self.act_dim = int(self.env.action_space.shape[0])
    if self.obs_dim != self.nq - self.layout.skipped_qpos + self.nv:
      raise ValueError(f"{self.env_id}: observation of {self.obs_dim} dims is not "
                       f"[qpos[{self.layout.skipped_qpos}:], qvel]; kwargs {kwargs}")
    self._data = mujoco.MjData(self.model)
    self._batch = None  # created lazily, reused across calls

  # ----------------------------------------------------------------------------------------
  # Observation <-> state.

  def states_from_observations(self, observations) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                            np.ndarray]:
    """Rebuilds (qpos, qvel) with the unobserved root coordinates at 0.

    Returns (qpos, qvel, clipped, nonfinite): the two masks mark rows that cannot be rebuilt.
    """
    obs = _as_2d(observations, "observations", self.obs_dim)
    k = self.layout.skipped_qpos
    npos = self.nq - k
    qpos = np.zeros((obs.shape[0], self.nq))
    qpos[:, k:] = obs[:, :npos]
    qvel = obs[:, npos:].copy()
    nonfinite = ~np.isfinite(obs).all(axis=1)
    if self.layout.vel_clip is None:
      clipped = np.zeros(obs.shape[0], bool)
    else:
      with np.errstate(invalid="ignore"):
        clipped = (np.abs(qvel) >= self.layout.vel_clip - self.clip_atol).any(axis=1)
      clipped &= ~nonfinite
    return qpos, qvel, clipped, nonfinite

  def observations_from_states(self, qpos, qvel) -> np.ndarray:
    """The env's `_get_obs` for rows of (qpos, qvel)."""
    qpos = _as_2d(qpos, "qpos", self.nq)
    qvel = _as_2d(qvel, "qvel", self.nv, qpos.shape[0])
    if self.layout.vel_clip is not None:
      qvel = np.clip(qvel, -self.layout.vel_clip, self.layout.vel_clip)
    return np.concatenate([qpos[:, self.layout.skipped_qpos:], qvel], axis=1)

  # ----------------------------------------------------------------------------------------
  # Stepping.

  def step(self, observations=None, actions=None, *, qpos=None, qvel=None) -> OracleStep:
    """True next observation, reward and termination of each row.

    Give either `observations` (rebuilt, with masking) or the true `qpos` and `qvel` (e.g. a
    dataset's infos/qpos, infos/qvel; used as they are). `actions` are what the policy output:
    the control cost uses them as given, and MuJoCo clamps the applied control to ctrlrange,
    exactly as env.step does.
    """
    if actions is None:
      raise ValueError("StateOracle.step needs actions")
    if qpos is not None or qvel is not None:
      if qpos is None or qvel is None:
        raise ValueError("pass both qpos and qvel (the dataset's infos/qpos and infos/qvel)")
      qpos = _as_2d(qpos, "qpos", self.nq)
      qvel = _as_2d(qvel, "qvel", self.nv, qpos.shape[0])
      nonfinite = ~(np.isfinite(qpos).all(1) & np.isfinite(qvel).all(1))
      clipped = np.zeros(qpos.shape[0], bool)
    elif observations is not None:
      qpos, qvel, clipped, nonfinite = self.states_from_observations(observations)
    else:
      raise ValueError("StateOracle.step needs observations or qpos and qvel")
    n = qpos.shape[0]
    actions = _as_2d(actions, "actions", self.act_dim, n)
    nonfinite |= ~np.isfinite(actions).all(axis=1)
    run = ~(clipped | nonfinite)

    next_qpos = np.full((n, self.nq), np.nan)
    next_qvel = np.full((n, self.nv), np.nan)
    unstable = np.zeros(n, bool)
    torso_after = np.full((n, 2), np.nan)
    contact_cost = np.zeros(n)
    idx = np.nonzero(run)[0]
    if len(idx):
      q0, v0, a0 = qpos[idx], qvel[idx], actions[idx]
      with _captured_mujoco_warnings():
        if self.backend == "loop":
          out = self._step_loop(q0, v0, a0)
        elif self.backend == "batch":
          out = self._step_batch(q0, v0, a0)
        else:
          out = self._step_rollout(q0, v0, a0)
      next_qpos[idx], next_qvel[idx], unstable[idx] = out[0], out[1], out[2]
      if self.env_id == "Ant-v5":
        torso_after[idx], contact_cost[idx] = out[3], out[4]
    valid = run & ~unstable
    next_qpos[~valid] = np.nan
    next_qvel[~valid] = np.nan

    rewards, terminals, terms = self._rewards(qpos, next_qpos, next_qvel, actions, torso_after,
                                              contact_cost)
    rewards[~valid] = np.nan
    next_obs = self.observations_from_states(next_qpos, next_qvel)
    return OracleStep(next_observations=next_obs, rewards=rewards, terminals=terminals & valid,
                      next_qpos=next_qpos, next_qvel=next_qvel, valid=valid, clipped=clipped,
                      nonfinite=nonfinite, unstable=unstable & run, reward_terms=terms)

  def _step_loop(self, qpos, qvel, actions):
    """Pure-python fallback: one MjData, one row at a time (also Ant's path)."""
    m, d = self.model, self._data
    n = qpos.shape[0]
    nq_out, nv_out = np.empty((n, self.nq)), np.empty((n, self.nv))
    unstable = np.zeros(n, bool)
    ant = self.env_id == "Ant-v5"
    torso, contact = np.zeros((n, 2)), np.zeros(n)
    if ant:
      body = self.model.body(self.env._main_body).id  # pylint: disable=protected-access
      lo, hi = self.env._contact_force_range  # pylint: disable=protected-access
      w_contact = self.env._contact_cost_weight  # pylint: disable=protected-access
    for i in range(n):
      mujoco.mj_resetData(m, d)  # fresh warm start, time and warning counters
      d.qpos[:] = qpos[i]
      d.qvel[:] = qvel[i]
      d.ctrl[:] = actions[i]
      mujoco.mj_step(m, d, nstep=self.frame_skip)
      unstable[i] = any(d.warning[w].number for w in _UNSTABLE_WARNINGS)
      nq_out[i], nv_out[i] = d.qpos, d.qvel
      if ant:
        mujoco.mj_rnePostConstraint(m, d)  # as gymnasium's _step_mujoco_simulation
        torso[i] = d.xpos[body, :2]
        contact[i] = w_contact * np.sum(np.square(np.clip(d.cfrc_ext, lo, hi)))
    return nq_out, nv_out, unstable, torso, contact

  def _step_batch(self, qpos, qvel, actions):
    """mujoco.batch.Batch: rows of the state matrix stepped frame_skip substeps on a pool."""
    from mujoco import batch as mj_batch
    n = qpos.shape[0]
    size = min(self.chunk, n)
    if self._batch is None or self._batch.nsim < size:
      self._batch = mj_batch.Batch(self.model, nsim=size, nthread=self.nthread)
    b = self._batch
    nq_out, nv_out = np.empty((n, self.nq)), np.empty((n, self.nv))
    unstable = np.zeros(n, bool)
    bad = [int(w) for w in _UNSTABLE_WARNINGS]
    for s in range(0, n, b.nsim):
      k = min(b.nsim, n - s)
      ids = np.arange(k, dtype=np.int32)
      # Reset zeroes time, warm start and warning counters, then the rows are overwritten.
      b.reset(ids, stage=mujoco.mjtStage.mjSTAGE_NONE)
      b.bind("qpos")[:k] = qpos[s:s + k]
      b.bind("qvel")[:k] = qvel[s:s + k]
      b.bind("ctrl")[:k] = actions[s:s + k]
      b.step(ids, nstep=self.frame_skip)
      nq_out[s:s + k] = b.bind("qpos")[:k]
      nv_out[s:s + k] = b.bind("qvel")[:k]
      unstable[s:s + k] = (b.warning[:k, bad, 1] > 0).any(axis=1)
    return nq_out, nv_out, unstable

  def _step_rollout(self, qpos, qvel, actions):
    """mujoco.rollout over full-physics state rows, frame_skip substeps with a held control."""
    from mujoco import rollout as mj_rollout
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    nstate = mujoco.mj_stateSize(self.model, spec)
    d = self._data
    mujoco.mj_resetData(self.model, d)
    template = np.empty(nstate)
    mujoco.mj_getState(self.model, d, template, spec)
    n = qpos.shape[0]
    nq_out, nv_out = np.empty((n, self.nq)), np.empty((n, self.nv))
    unstable = np.zeros(n, bool)
    qpos_at, qvel_at = self._state_offsets(spec)
    datas = [mujoco.MjData(self.model) for _ in range(max(self.nthread, 1))]
    for s in range(0, n, self.chunk):
      k = min(self.chunk, n - s)
      init = np.tile(template, (k, 1))
      init[:, qpos_at:qpos_at + self.nq] = qpos[s:s + k]
      init[:, qvel_at:qvel_at + self.nv] = qvel[s:s + k]
      ctrl = np.repeat(actions[s:s + k, None, :], self.frame_skip, axis=1)
      with _captured_mujoco_warnings() as messages:
        state, _ = mj_rollout.rollout(self.model, datas, init, ctrl)
      if messages:
        # rollout stops a diverging simulation silently; the loop names the rows (the two
        # backends are bit-identical).
        out = self._step_loop(qpos[s:s + k], qvel[s:s + k], actions[s:s + k])
        nq_out[s:s + k], nv_out[s:s + k], unstable[s:s + k] = out[:3]
        continue
      last = state[:, -1]
      nq_out[s:s + k] = last[:, qpos_at:qpos_at + self.nq]
      nv_out[s:s + k] = last[:, qvel_at:qvel_at + self.nv]
    return nq_out, nv_out, unstable

  def _state_offsets(self, spec) -> tuple[int, int]:
    m = self.model
    sizes = {}
    for comp in (mujoco.mjtState.mjSTATE_TIME, mujoco.mjtState.mjSTATE_QPOS):
      sizes[comp] = mujoco.mj_stateSize(m, comp)
    # Components are laid out in mjtState bit order: time, qpos, qvel, ...
    qpos_at = sizes[mujoco.mjtState.mjSTATE_TIME]
    return qpos_at, qpos_at + sizes[mujoco.mjtState.mjSTATE_QPOS]

  # ----------------------------------------------------------------------------------------
  # Rewards and terminations (gymnasium v5 `_get_rew` and `is_healthy`, vectorised).

  def _rewards(self, qpos, next_qpos, next_qvel, actions, torso_after, contact_cost):
    env = self.env
    # pylint: disable=protected-access
    ctrl_cost = env._ctrl_cost_weight * np.sum(np.square(actions), axis=1)
    if self.env_id == "Ant-v5":
      # xpos of the free-floating torso after set_state (mj_forward) is qpos[0:2].
      x_velocity = (torso_after[:, 0] - qpos[:, 0]) / self.dt
    else:
      x_velocity = (next_qpos[:, 0] - qpos[:, 0]) / self.dt
    forward = env._forward_reward_weight * x_velocity
    terms = {"reward_forward": forward, "reward_ctrl": -ctrl_cost}
    with np.errstate(invalid="ignore"):
      if self.env_id == "HalfCheetah-v5":
        return forward - ctrl_cost, np.zeros(len(forward), bool), terms
      z_lo, z_hi = env._healthy_z_range
      if self.env_id == "Ant-v5":
        state = np.concatenate([next_qpos, next_qvel], axis=1)
        z = next_qpos[:, 2]
        healthy = np.isfinite(state).all(axis=1) & (z_lo <= z) & (z <= z_hi)
      else:
        z, angle = next_qpos[:, 1], next_qpos[:, 2]
        a_lo, a_hi = env._healthy_angle_range
        healthy = (z_lo < z) & (z < z_hi) & (a_lo < angle) & (angle < a_hi)
        if self.env_id == "Hopper-v5":
          s_lo, s_hi = env._healthy_state_range
          state = np.concatenate([next_qpos, next_qvel], axis=1)[:, 2:]
          healthy &= ((s_lo < state) & (state < s_hi)).all(axis=1)
    healthy_reward = healthy * env._healthy_reward
    reward = forward + healthy_reward - ctrl_cost
    terms["reward_survive"] = healthy_reward
    if self.env_id == "Ant-v5":
      reward = reward - contact_cost
      terms["reward_contact"] = -contact_cost
    terminated = ~healthy & bool(env._terminate_when_unhealthy)
    # pylint: enable=protected-access
    return reward, terminated, terms


_ORACLES: dict[tuple, StateOracle] = {}


def get_oracle(env_id: str, backend: str = "auto", nthread: int = 1) -> StateOracle:
  """A cached StateOracle with default env kwargs (building one compiles the MuJoCo model)."""
  key = (resolve_env_id(env_id), backend, nthread)
  if key not in _ORACLES:
    _ORACLES[key] = StateOracle(key[0], backend=backend, nthread=nthread)
  return _ORACLES[key]


def measure_throughput(env_id: str, n: int = 4000, backend: str = "auto", nthread: int = 1,
                       seed: int = 0) -> dict[str, float]:
  """Rows/s of StateOracle.step on states visited by a random-action rollout."""
  oracle = StateOracle(env_id, backend=backend, nthread=nthread)
  obs, acts = random_transitions(env_id, n, seed=seed)[:2]
  oracle.step(obs[:64], acts[:64])  # warm-up (allocates the batch)
  t0 = time.perf_counter()
  out = oracle.step(obs, acts)
  dt = time.perf_counter() - t0
  return {"rows": n, "seconds": dt, "rows_per_s": n / dt, "n_valid": out.n_valid}


def random_transitions(env_id: str, n: int, seed: int = 0, action_scale: float = 1.0,
                       max_episode_steps: int = 200):
  """`n` real transitions from gymnasium with uniform random actions (for tests and benches).

  Returns (observations, actions, rewards, next_observations, terminals, qpos, qvel), where
  (qpos, qvel) is the simulator state before each step (with the true root position).
  """
  env_id = resolve_env_id(env_id)
  with _captured_mujoco_warnings():
    env = gym.make(env_id, **ENV_KWARGS[env_id]).unwrapped
  rng = np.random.default_rng(seed)
  obs_l, act_l, rew_l, nxt_l, term_l, qp_l, qv_l = [], [], [], [], [], [], []
  obs, _ = env.reset(seed=seed)
  t = 0
  while len(obs_l) < n:
    a = action_scale * rng.uniform(-1.0, 1.0, env.action_space.shape)
    qp_l.append(env.data.qpos.copy())
    qv_l.append(env.data.qvel.copy())
    nxt, r, term, _, _ = env.step(a)
    obs_l.append(obs)
    act_l.append(a)
    rew_l.append(r)
    nxt_l.append(nxt)
    term_l.append(term)
    t += 1
    obs = nxt
    if term or t >= max_episode_steps:
      obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
      t = 0
  env.close()
  return tuple(np.asarray(x) for x in (obs_l, act_l, rew_l, nxt_l, term_l, qp_l, qv_l))
