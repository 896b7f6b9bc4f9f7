"""The papers' benchmark suites without a simulator: names, layouts, time limits, references.

Everything here is plain data, importable without gymnasium-robotics or metaworld, so dataset
specs, name resolution and scores work on a machine without the `suites` extra.

Canonical environment ids (what `jaxaug.envs.resolve_env_id` returns for a suite name):
  antmaze-umaze, antmaze-medium, antmaze-large      D4RL AntMaze evaluation mazes (*_TEST maps)
  maze2d-umaze, maze2d-medium, maze2d-large         D4RL Maze2D (single-goal) mazes
  kitchen-microwave-kettle-light-slider             FrankaKitchen, D4RL complete/partial tasks
  kitchen-microwave-kettle-bottomburner-light       FrankaKitchen, D4RL mixed tasks
  AdroitHandPen-v1, AdroitHandDoor-v1, AdroitHandHammer-v1, AdroitHandRelocate-v1
  Meta-World/<task>-v3                              e.g. Meta-World/reach-v3 (MT1, one task)
  Meta-World/<task>-v3-sparse                       the same task with ATraDiff's sparse
                                                    success reward (1 at success, which ends
                                                    the episode; 0 otherwise)
All of them present flat float32 observations in the layout of the D4RL files (docs/suites.md).
"""

from __future__ import annotations

import dataclasses
import re

ANT_MAZE_SCALE = 4.0  # cell size of the AntMaze mazes (D4RL and gymnasium-robotics agree)


@dataclasses.dataclass(frozen=True)
class SuiteEnv:
  """Static description of one suite environment."""

  env_id: str
  suite: str  # antmaze | maze2d | kitchen | adroit | metaworld
  obs_dim: int
  act_dim: int
  max_episode_steps: int  # the D4RL registration's time limit (Meta-World: 500)
  layout: tuple[tuple[str, int], ...]  # observation blocks in order: (description, size)
  ref_min: float | None = None  # D4RL REF_MIN_SCORE (None: scored by success rate)
  ref_max: float | None = None
  maze: tuple[str, ...] | None = None  # D4RL map rows: '#' wall, 'O' free, 'R' start, 'G' goal
  tasks: tuple[str, ...] = ()  # FrankaKitchen tasks
  gym_id: str = ""  # the gymnasium(-robotics) registration it is built from
  note: str = ""

  @property
  def score(self) -> str:
    return "success" if self.ref_min is None else "d4rl"

  def layout_text(self) -> str:
    return " + ".join(f"{name}({size})" for name, size in self.layout)


# D4RL's maps. AntMaze evaluates on the *_TEST maps (one start R, one goal G); Maze2D on its
# single-goal maps (start anywhere free). Row i, column j as in D4RL's source.
_U_MAZE_TEST = ("#####", "#ROO#", "###O#", "#GOO#", "#####")
_BIG_MAZE_TEST = ("########", "#RO##OO#", "#OO#OOO#", "##OOO###", "#OO#OOO#", "#O#OO#O#",
                  "#OOO#OG#", "########")
_HARDEST_MAZE_TEST = ("############", "#ROOO#OOOOO#", "#O##O#O#O#O#", "#OOOOOO#OOO#",
                      "#O####O###O#", "#OO#O#OOOOO#", "##O#O#O#O###", "#OO#OOO#OGO#",
                      "############")
_MAZE2D_U = ("#####", "#GOO#", "###O#", "#OOO#", "#####")
_MAZE2D_MEDIUM = ("########", "#OO##OO#", "#OO#OOO#", "##OOO###", "#OO#OOO#", "#O#OO#O#",
                  "#OOO#OG#", "########")
_MAZE2D_LARGE = ("############", "#OOOO#OOOOO#", "#O##O#O#O#O#", "#OOOOOO#OOO#",
                 "#O####O###O#", "#OO#O#OOOOO#", "##O#O#O#O###", "#OO#OOO#OGO#",
                 "############")

_ANT_LAYOUT = (("torso x, y in D4RL's maze frame (start cell = origin)", 2),
               ("qpos[2:15]: torso z, quaternion, 8 joint angles", 13),
               ("qvel[0:14]", 14))
_MAZE2D_LAYOUT = (("qpos x, y in D4RL's frame (x = row direction)", 2), ("qvel x, y", 2))
_KITCHEN_LAYOUT = (("robot qpos (7 arm joints, 2 fingers)", 9), ("object qpos", 21),
                   ("goal: task targets at their qpos indices, zeros elsewhere", 30))
KITCHEN_COMPLETE_TASKS = ("microwave", "kettle", "light switch", "slide cabinet")
KITCHEN_MIXED_TASKS = ("microwave", "kettle", "bottom burner", "light switch")

SUITE_ENVS: dict[str, SuiteEnv] = {}


def _add(e: SuiteEnv) -> None:
  SUITE_ENVS[e.env_id] = e


for _size, _gym, _map, _steps in (("umaze", "AntMaze_UMaze-v5", _U_MAZE_TEST, 700),
                                  ("medium", "AntMaze_Medium-v5", _BIG_MAZE_TEST, 1000),
                                  ("large", "AntMaze_Large-v5", _HARDEST_MAZE_TEST, 1000)):
  _add(SuiteEnv(f"antmaze-{_size}", "antmaze", 29, 8, _steps, _ANT_LAYOUT, 0.0, 1.0, _map,
                gym_id=_gym, note="return 1 when the torso comes within 0.5 of the goal "
                "(episode ends), else 0"))
for _size, _gym, _map, _steps, _lo, _hi in (
    ("umaze", "PointMaze_UMaze-v3", _MAZE2D_U, 300, 23.85, 161.86),
    ("medium", "PointMaze_Medium-v3", _MAZE2D_MEDIUM, 600, 13.13, 277.39),
    ("large", "PointMaze_Large-v3", _MAZE2D_LARGE, 800, 6.7, 273.99)):
  _add(SuiteEnv(f"maze2d-{_size}", "maze2d", 4, 2, _steps, _MAZE2D_LAYOUT, _lo, _hi, _map,
                gym_id=_gym, note="reward 1 per step within 0.5 of the goal, no termination"))
for _name, _tasks in (("kitchen-microwave-kettle-light-slider", KITCHEN_COMPLETE_TASKS),
                      ("kitchen-microwave-kettle-bottomburner-light", KITCHEN_MIXED_TASKS)):
  _add(SuiteEnv(_name, "kitchen", 60, 9, 280, _KITCHEN_LAYOUT, 0.0, 4.0, tasks=_tasks,
                gym_id="FrankaKitchen-v1", note="reward 1 per task completed; ends when all 4 are"))
# Adroit v1: D4RL's hand_manipulation_suite constants; time limits per D4RL's MAX_STEPS.
for _task, _obs, _act, _steps, _lo, _hi in (
    ("Pen", 45, 24, 100, 96.262799, 3076.8331017826877),
    ("Door", 39, 28, 200, -56.512833, 2880.5693087298737),
    ("Hammer", 46, 26, 200, -274.856578, 12794.134825156867),
    ("Relocate", 39, 30, 200, -6.425911, 4233.877797728884)):
  _add(SuiteEnv(f"AdroitHand{_task}-v1", "adroit", _obs, _act, _steps,
                ((f"gymnasium-robotics AdroitHand{_task}-v1 observation (= D4RL {_task.lower()}"
                  "-v1)", _obs),), _lo, _hi, gym_id=f"AdroitHand{_task}-v1"))

METAWORLD_OBS_DIM, METAWORLD_ACT_DIM, METAWORLD_STEPS = 39, 4, 500

# D4RL dataset name (no version) -> canonical env id.
D4RL_DATASETS: dict[str, str] = {
    "antmaze-umaze": "antmaze-umaze", "antmaze-umaze-diverse": "antmaze-umaze",
    "antmaze-medium-play": "antmaze-medium", "antmaze-medium-diverse": "antmaze-medium",
    "antmaze-large-play": "antmaze-large", "antmaze-large-diverse": "antmaze-large",
    "maze2d-umaze": "maze2d-umaze", "maze2d-medium": "maze2d-medium",
    "maze2d-large": "maze2d-large",
    "kitchen-complete": "kitchen-microwave-kettle-light-slider",
    "kitchen-partial": "kitchen-microwave-kettle-light-slider",
    "kitchen-mixed": "kitchen-microwave-kettle-bottomburner-light",
}
for _task in ("pen", "door", "hammer", "relocate"):
  for _kind in ("human", "cloned", "expert"):
    D4RL_DATASETS[f"{_task}-{_kind}"] = f"AdroitHand{_task.capitalize()}-v1"
# The versions the papers use (D4RL ids are '<name>-<version>').
D4RL_VERSIONS = {"antmaze": "v2", "maze2d": "v1", "kitchen": "v0", "pen": "v1", "door": "v1",
                 "hammer": "v1", "relocate": "v1"}

# Minari ids of the same data ('D4RL/<domain>/<name>-v<k>'): domain/name -> D4RL name.
_MINARI_DOMAINS = {"antmaze": "antmaze", "pointmaze": "maze2d", "kitchen": "kitchen",
                   "pen": "pen", "door": "door", "hammer": "hammer", "relocate": "relocate"}

_METAWORLD_RE = re.compile(r"^(?:meta-?world|mw)[/:-]([a-z0-9-]+?)(?:-v\d+)?(-sparse)?$")
METAWORLD_SPARSE = "-sparse"  # env id suffix of the sparse success-reward variant


def metaworld_env_id(task: str, sparse: bool = False) -> str:
  return f"Meta-World/{task}-v3" + (METAWORLD_SPARSE if sparse else "")


def metaworld_sparse(env_id: str) -> bool:
  """True for 'Meta-World/<task>-v3-sparse' (ATraDiff's sparse success reward)."""
  return env_id.startswith("Meta-World/") and env_id.endswith("-v3" + METAWORLD_SPARSE)


def metaworld_task(env_id: str) -> str:
  name = env_id.split("/", 1)[1]
  if name.endswith(METAWORLD_SPARSE):
    name = name[:-len(METAWORLD_SPARSE)]
  return name[:-len("-v3")]


def resolve_suite_id(name: str) -> str | None:
  """Canonical suite env id of a D4RL name ('antmaze-medium-play-v2'), a Minari id
  ('D4RL/antmaze/medium-play-v1'), a path ending in such a name, or a canonical id; None when
  the name belongs to no suite."""
  text = name.strip()
  if text in SUITE_ENVS:
    return text
  lower = text.lower()
  m = _METAWORLD_RE.match(lower)
  if m:
    return metaworld_env_id(m.group(1), sparse=bool(m.group(2)))
  for env_id in SUITE_ENVS:  # case-insensitive canonical ids
    if lower == env_id.lower():
      return env_id
  parts = lower.split("/")
  if len(parts) >= 3 and parts[-3] == "d4rl" and parts[-2] in _MINARI_DOMAINS:
    rest = re.sub(r"-v\d+$", "", parts[-1]).replace("-dense", "")
    d4rl = f"{_MINARI_DOMAINS[parts[-2]]}-{rest}"
    if d4rl in D4RL_DATASETS:
      return D4RL_DATASETS[d4rl]
    if d4rl in SUITE_ENVS:  # 'D4RL/pointmaze/umaze-v2' -> maze2d-umaze
      return d4rl
  base = parts[-1]
  base = re.sub(r"\.(hdf5|h5|npz)$", "", base)
  m = _METAWORLD_RE.match(base)  # a file named like the env: DIR/metaworld-push-v3-sparse.hdf5
  if m:
    return metaworld_env_id(m.group(1), sparse=bool(m.group(2)))
  base = re.sub(r"-v\d+$", "", base)
  base = re.sub(r"-(sparse|dense)$", "", base)
  if base in D4RL_DATASETS:
    return D4RL_DATASETS[base]
  if base in SUITE_ENVS:
    return base
  return None


def suite_env(env_id: str) -> SuiteEnv:
  """The SuiteEnv of a canonical id (Meta-World tasks are built on demand)."""
  if env_id in SUITE_ENVS:
    return SUITE_ENVS[env_id]
  if env_id.startswith("Meta-World/") and (env_id.endswith("-v3") or metaworld_sparse(env_id)):
    task = metaworld_task(env_id)
    note = ("sparse reward: 1 at the first success, which ends the episode, else 0 (ATraDiff)"
            if metaworld_sparse(env_id) else "Meta-World's dense v3 reward")
    return SuiteEnv(env_id, "metaworld", METAWORLD_OBS_DIM, METAWORLD_ACT_DIM, METAWORLD_STEPS,
                    ((f"Meta-World {task}-v3 observation (hand, gripper, objects, goal)",
                      METAWORLD_OBS_DIM),), gym_id="Meta-World/MT1",
                    note=note + "; scored by success rate (success at any step)")
  raise KeyError(env_id)


def is_suite_env(env_id: str) -> bool:
  try:
    suite_env(env_id)
    return True
  except KeyError:
    return False
