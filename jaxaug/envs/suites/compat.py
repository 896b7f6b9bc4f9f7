"""Optional suite packages: import checks and the mujoco 4 compatibility shims.

jaxaug pins mujoco 4.0; gymnasium-robotics 1.4.2 and metaworld 3.1.1 were written against
mujoco 3 and break in two places under mujoco 4 (both found by building every suite env):

1. gymnasium-robotics `utils.mujoco_utils.{get,set}_joint_q{pos,vel}` compare
   `model.jnt_type[i]` (a numpy integer) with the `mujoco.mjtJoint` enum. mujoco 4's enums no
   longer compare equal to numpy integers, so every hinge/slide joint fails the `assert` and
   FrankaKitchen-v1 cannot even reset. The shim replaces the four functions with ones that
   compare `int(model.jnt_type[i])`. (The upstream qvel getter also gives ball joints 4 velocity
   entries instead of 3; the shim uses 3, the size of a ball joint's qvel.)
2. metaworld's `SawyerMocapBase.reset_mocap_welds` writes an 11-value row into `eq_data`, whose
   rows have 12 entries since mujoco 4 (mjNEQDATA 11 -> 12: the new last entry flags a weld whose
   relative pose is recomputed by mj_setConst). Every Meta-World env fails to construct. The shim
   writes the same 11 values and sets the flag to 0, i.e. "use this relative pose as given",
   which is what the 11 values meant under mujoco 3.

Both shims are applied once, on first use of a suite, and only patch the functions named.
"""

from __future__ import annotations

import importlib

INSTALL_HINT = 'pip install -e ".[suites]" && pip install --no-deps "metaworld>=3.1.1,<3.2"'

# Package -> (the suites that need it, what to install).
_PACKAGES = {
    "gymnasium_robotics": ("AntMaze, Maze2D, FrankaKitchen and Adroit",
                           'pip install -e ".[suites]"'),
    "metaworld": ("Meta-World", 'pip install -e ".[suites]" && pip install --no-deps '
                  '"metaworld>=3.1.1,<3.2" (metaworld pins mujoco 3.3; its code runs on mujoco 4 '
                  "with jaxaug's shim)"),
}

_PATCHED: set[str] = set()


def require(package: str):
  """Imports `package` or raises ImportError naming the extra to install."""
  try:
    module = importlib.import_module(package)
  except ImportError as e:
    suites, how = _PACKAGES[package]
    raise ImportError(f"the {suites} environments need the optional package {package!r}, which "
                      f"is not installed (or failed to import: {e}); install the suites extra: "
                      f"{how}") from e
  apply_shims(package)
  return module


def available(package: str) -> bool:
  try:
    require(package)
    return True
  except ImportError:
    return False


def _joint_size(model, joint_id: int, vel: bool) -> int:
  import mujoco
  kind = int(model.jnt_type[joint_id])
  if kind == int(mujoco.mjtJoint.mjJNT_FREE):
    return 6 if vel else 7
  if kind == int(mujoco.mjtJoint.mjJNT_BALL):
    return 3 if vel else 4
  if kind not in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)):
    raise ValueError(f"unknown MuJoCo joint type {kind} for joint {joint_id}")
  return 1


def _joint_slice(model, name: str, vel: bool) -> slice:
  import mujoco
  joint_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
  if joint_id == -1:
    raise ValueError(f"joint {name!r} is not part of the model")
  start = int(model.jnt_dofadr[joint_id] if vel else model.jnt_qposadr[joint_id])
  return slice(start, start + _joint_size(model, joint_id, vel))


def _patch_gymnasium_robotics() -> None:
  import numpy as np
  from gymnasium_robotics.utils import mujoco_utils as mu

  def get_joint_qpos(model, data, name):
    return data.qpos[_joint_slice(model, name, False)].copy()

  def get_joint_qvel(model, data, name):
    return data.qvel[_joint_slice(model, name, True)].copy()

  def set_joint_qpos(model, data, name, value):
    s = _joint_slice(model, name, False)
    data.qpos[s] = np.asarray(value).reshape(-1) if s.stop - s.start > 1 else value

  def set_joint_qvel(model, data, name, value):
    s = _joint_slice(model, name, True)
    data.qvel[s] = np.asarray(value).reshape(-1) if s.stop - s.start > 1 else value

  # Module globals: robot_get_obs and the envs look these up in the module at call time.
  mu.get_joint_qpos, mu.get_joint_qvel = get_joint_qpos, get_joint_qvel
  mu.set_joint_qpos, mu.set_joint_qvel = set_joint_qpos, set_joint_qvel


def _patch_metaworld() -> None:
  import mujoco
  import numpy as np
  from metaworld import sawyer_xyz_env

  weld = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 5.0])

  def reset_mocap_welds(self) -> None:
    if self.model.nmocap > 0 and self.model.eq_data is not None:
      for i in range(self.model.eq_data.shape[0]):
        if int(self.model.eq_type[i]) == int(mujoco.mjtEq.mjEQ_WELD):
          self.model.eq_data[i, :len(weld)] = weld
          self.model.eq_data[i, len(weld):] = 0.0  # mujoco >= 4: the pose above is explicit

  sawyer_xyz_env.SawyerMocapBase.reset_mocap_welds = reset_mocap_welds


def apply_shims(package: str) -> None:
  if package in _PATCHED:
    return
  if package == "gymnasium_robotics":
    _patch_gymnasium_robotics()
    import gymnasium
    import gymnasium_robotics
    gymnasium.register_envs(gymnasium_robotics)
  elif package == "metaworld":
    _patch_metaworld()
  _PATCHED.add(package)
