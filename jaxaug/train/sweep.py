"""Sweeps as one sharded program: seeds x float hyperparameters on a leading `sweep` axis.

A sweep is a list of points, each a dict of config overrides ({'agent.alpha': 2.5, 'seed': 1}).
`parse_spec` reads them from a grid (`agent.alpha=[1,2.5] seed=range(4)`: the product over the
keys) or from a Python file whose `get_sweep()` returns the list.

Points whose configs differ only in `seed` and in float fields of `agent` (alpha, tau, discount,
learning rates, ...: leaves of the agent state, jaxaug.agents.common) form one group and train
in ONE jitted program: their states are stacked on axis 0, the loop's dispatch is vmapped over
that axis and sharded over the `sweep` axis of a 2-D mesh (`sweep` x `data`), each point with the
init key and loop key of a separate run with its seed. Everything else (network sizes, batch
size, dataset, ...) changes the program: such points form further groups, run one after another.
A float the agent keeps static (its state's structure differs) splits a group the same way.

Point p's results equal a separate `train_offline` run of point p's config (tests/test_sweep.py).
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import importlib.util
import itertools
import json
import os
import re
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxaug.train import mesh as mesh_lib

Point = dict  # {'dotted.key': value}

# Top-level fields a point may vary inside one program (besides float fields of `agent`).
_FREE_TOP_LEVEL = ("seed",)


# ----------------------------------------------------------------------------- spec language
def _split_top(text: str, sep: str | None) -> list[str]:
  """Split on `sep` (None = whitespace) outside brackets and quotes."""
  out, depth, quote, cur = [], 0, "", []
  for ch in text:
    if quote:
      cur.append(ch)
      if ch == quote:
        quote = ""
      continue
    if ch in "'\"":
      quote = ch
    elif ch in "([{":
      depth += 1
    elif ch in ")]}":
      depth -= 1
    is_sep = (ch.isspace() if sep is None else ch == sep)
    if is_sep and depth == 0:
      if cur:
        out.append("".join(cur))
      cur = []
      continue
    cur.append(ch)
  if depth != 0 or quote:
    raise ValueError(f"--sweep: unbalanced brackets or quotes in {text!r}")
  if "".join(cur).strip():
    out.append("".join(cur))
  return [s.strip() for s in out if s.strip()]


def _literal(text: str) -> Any:
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # a bare word: a string


_RANGE_RE = re.compile(r"^range\(([^)]*)\)$")


def _parse_values(key: str, text: str) -> list:
  m = _RANGE_RE.match(text.replace(" ", ""))
  if m:
    try:
      args = [int(a) for a in m.group(1).split(",")]
      if not 1 <= len(args) <= 3:
        raise ValueError
      values = list(range(*args))
    except ValueError:
      raise ValueError(f"--sweep: {key}={text}: range takes 1 to 3 integers, e.g. "
                       f"{key}=range(5) or {key}=range(2,8,2)") from None
  elif text.startswith("[") and text.endswith("]"):
    values = [_literal(v) for v in _split_top(text[1:-1], ",")]
  else:
    raise ValueError(f"--sweep: {key}={text}: expected a list [v1,v2,...] or range(n)")
  if not values:
    raise ValueError(f"--sweep: {key}={text} gives no values")
  return values


def parse_grid(spec: str) -> list[Point]:
  """'a=[1,2] b=range(2)' -> [{'a': 1, 'b': 0}, {'a': 1, 'b': 1}, {'a': 2, ...}, ...]
  (product over the keys, the last key varying fastest)."""
  keys, lists = [], []
  for item in _split_top(spec, None):
    key, sep, rest = item.partition("=")
    key = key.strip()
    if not sep or not key or not rest.strip():
      raise ValueError(f"--sweep: {item!r} is not KEY=[v1,v2,...] or KEY=range(n)")
    if key in keys:
      raise ValueError(f"--sweep: key {key!r} is given twice")
    keys.append(key)
    lists.append(_parse_values(key, rest.strip()))
  if not keys:
    raise ValueError("--sweep: empty sweep specification")
  return [dict(zip(keys, combo)) for combo in itertools.product(*lists)]


def load_sweep_file(path: str) -> list[Point]:
  """The points returned by `get_sweep()` of the Python file `path`."""
  spec = importlib.util.spec_from_file_location("jaxaug_sweep_file", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_sweep"):
    raise ValueError(f"--sweep={path}: the file has no get_sweep() function")
  points = module.get_sweep()
  if not isinstance(points, (list, tuple)) or not points or not all(
      isinstance(p, Mapping) for p in points):
    raise ValueError(f"--sweep={path}: get_sweep() must return a non-empty list of dicts "
                     f"(config overrides), got {type(points).__name__}")
  return [dict(p) for p in points]


def parse_spec(spec: str) -> list[Point]:
  """A grid spec, or the path of a Python sweep file (ends in .py)."""
  spec = spec.strip()
  if spec.endswith(".py") and "=" not in spec:
    if not os.path.isfile(spec):
      raise ValueError(f"--sweep={spec}: no such sweep file")
    return load_sweep_file(spec)
  return parse_grid(spec)


# ----------------------------------------------------------------------------- configs
def _lookup(config: ml_collections.ConfigDict, key: str, where: str):
  node, parts = config, key.split(".")
  for i, part in enumerate(parts):
    if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
      prefix = ".".join(parts[:i])
      known = sorted(node.keys()) if isinstance(node, (ml_collections.ConfigDict, dict)) else []
      raise ValueError(f"--sweep key {key!r}: the config {where} has no field {part!r}"
                       f"{' under ' + prefix if prefix else ''}; known: {known}")
    if i < len(parts) - 1:
      node = node[part]
  return node, parts[-1]


def validate_points(config: ml_collections.ConfigDict, points: Sequence[Point],
                    where: str = "") -> None:
  """Every key of every point names a field of `config` (ValueError naming it otherwise)."""
  for p in points:
    for key in p:
      if key == "num_seeds":
        raise ValueError("--sweep key 'num_seeds': a sweep replaces the seed axis; sweep over "
                         "seed instead (seed=range(n))")
      _lookup(config, key, where)


def apply_overrides(config: ml_collections.ConfigDict, point: Point,
                    where: str = "") -> ml_collections.ConfigDict:
  """A copy of `config` with the point's overrides (ints given for float fields become floats,
  lists for tuple fields tuples)."""
  out = copy.deepcopy(config)
  for key, value in point.items():
    node, leaf = _lookup(out, key, where)
    old = node[leaf]
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
      value = float(value)
    elif isinstance(old, tuple) and isinstance(value, list):
      value = tuple(value)
    try:
      node[leaf] = value
    except TypeError as e:
      raise ValueError(f"--sweep {key}={value!r}: {e}") from None
  return out


def _flat(config) -> dict:
  d = json.loads(config.to_json_best_effort(sort_keys=True))

  def walk(x, prefix):
    for k, v in x.items():
      if isinstance(v, dict):
        yield from walk(v, f"{prefix}{k}.")
      else:
        yield f"{prefix}{k}", v
  return dict(walk(d, ""))


def is_generator_config(config) -> bool:
  """A diffusion-generator config (configs/gta.py, configs/synther.py): `method` + `diffusion`."""
  return "method" in config and "diffusion" in config and "agent_name" not in config


def is_online_config(config) -> bool:
  """An online config (configs/sac.py, redq.py, rlpd.py): env steps instead of a dataset."""
  return "num_env_steps" in config and "env_id" in config


def leaf_prefix(config) -> str:
  """Where the learner's float hyperparameters live: `agent.` (agents), `diffusion.`
  (generators: jaxaug.diffusion.train follows the agent convention)."""
  return "diffusion." if is_generator_config(config) else "agent."


def is_leaf_field(key: str, value: Any, prefix: str = "agent.") -> bool:
  """Fields a point may vary inside one program: `seed` and float fields under `prefix`."""
  return key in _FREE_TOP_LEVEL or (key.startswith(prefix) and isinstance(value, float))


def structure_key(config: ml_collections.ConfigDict, prefix: str | None = None) -> str:
  """The config with the fields a sweep program may vary blanked out: equal keys, one program."""
  prefix = leaf_prefix(config) if prefix is None else prefix
  flat = _flat(config)
  return json.dumps({k: ("<leaf>" if is_leaf_field(k, v, prefix) else v)
                     for k, v in flat.items()}, sort_keys=True)


def group_points(configs: Sequence[ml_collections.ConfigDict]) -> list[list[int]]:
  """Indices of points grouped by structure_key, in order of first appearance."""
  groups: dict[str, list[int]] = {}
  for i, c in enumerate(configs):
    groups.setdefault(structure_key(c), []).append(i)
  return list(groups.values())


def point_name(index: int, point: Point) -> str:
  """'3_alpha=2.5_seed=1': the index, then each override with its last key component."""
  parts = [str(index)]
  for key, value in point.items():
    v = value if not isinstance(value, (list, tuple)) else "x".join(map(str, value))
    parts.append(f"{key.rsplit('.', 1)[-1]}={v}")
  name = "_".join(parts)
  name = re.sub(r"[^A-Za-z0-9_.=+-]", "", name)
  return name[:120]


# ----------------------------------------------------------------------------- states
def _hypers(tree) -> list:
  from jaxaug.agents.common import Hyper  # pylint: disable=g-import-not-at-top
  return [x for x in jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, Hyper))
          if isinstance(x, Hyper)]


def state_signature(state) -> str:
  """What must agree for states to stack: array paths, shapes, dtypes, the agents' static
  hyperparameters (Hyper.static_key) and the tree structure with its static data as text
  (function addresses removed: a TrainState's optimiser and apply functions are new closures
  in every init but the same code; their numbers are leaves). A hyperparameter an agent keeps
  static (a value in a static dataclass, say) shows in that text, so such points never share a
  program whose stacked state would carry only the first point's value."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
  arrays = [(jax.tree_util.keystr(p), tuple(np.shape(x)), str(getattr(x, "dtype", type(x))))
            for p, x in leaves]
  statics = [repr(h.static_key) for h in _hypers(state)]
  structure = re.sub(r" at 0x[0-9a-fA-F]+", "", str(jax.tree.structure(state)))
  return json.dumps([arrays, statics, structure])


def stack_states(states: Sequence[Any]) -> Any:
  """Stack same-signature states on a new axis 0 (in the first state's tree structure)."""
  treedef = jax.tree.structure(states[0])
  leaves = [jax.tree.leaves(s) for s in states]
  return jax.tree.unflatten(treedef, [np.stack([np.asarray(x[j]) for x in leaves])
                                      for j in range(len(leaves[0]))])


def _get(config, key: str):
  node, leaf = _lookup(config, key, "")
  return node[leaf]


def varying_leaf_fields(configs: Sequence[ml_collections.ConfigDict]) -> list[str]:
  """The fields a group's points vary that were blanked by structure_key (seed excluded)."""
  flats = [_flat(c) for c in configs]
  prefix = leaf_prefix(configs[0])
  return sorted(k for k in flats[0] if k not in _FREE_TOP_LEVEL
                and is_leaf_field(k, flats[0][k], prefix)
                and any(f.get(k) != flats[0][k] for f in flats[1:]))


def constant_fields(configs: Sequence[ml_collections.ConfigDict], init_with) -> list[str]:
  """Varying float fields that change no array of the initial state: `init_with(config)` builds
  a state with one fixed key, for point 0's config and, per varying field, for point 0's config
  with that field set to another point's value; equal arrays = the field is not a leaf."""
  out = []
  fields = varying_leaf_fields(configs)
  state0 = init_with(configs[0]) if fields else None
  for field in fields:
    other = next(_get(c, field) for c in configs[1:] if _get(c, field) != _get(configs[0], field))
    changed = apply_overrides(configs[0], {field: other})
    a, b = jax.tree.leaves(state0), jax.tree.leaves(init_with(changed))
    if len(a) == len(b) and all(np.array_equal(np.asarray(x), np.asarray(y))
                                for x, y in zip(a, b)):
      out.append(field)
  return out


def split_by_signature(signatures: Sequence[str]) -> list[list[int]]:
  groups: dict[str, list[int]] = {}
  for i, s in enumerate(signatures):
    groups.setdefault(s, []).append(i)
  return list(groups.values())


def split_group(configs: Sequence[ml_collections.ConfigDict], states: Sequence[Any],
                init_with) -> list[list[int]]:
  """The programs one structure group needs: its points' initial `states` must have one
  signature (state_signature: shapes, static hyperparameters, static tree data) and every
  varying float that changes no state array (constant_fields: a Python constant, e.g. the
  diffusion optimiser's b1 / b2 / grad_clip / weight_decay) must have one value."""
  constant = constant_fields(configs, init_with)
  signatures = [state_signature(s) + json.dumps([_get(c, f) for f in constant])
                for s, c in zip(states, configs)]
  return split_by_signature(signatures)


def choose_sweep_devices(num_points: int, num_devices: int, requested: int = 0) -> int:
  """Devices on the `sweep` axis: `requested`, else the largest divisor of the device count
  not above the number of points (the rest of the devices shard each point's batch)."""
  if requested:
    if num_devices % requested:
      raise ValueError(f"--sweep_devices={requested} must divide the device count "
                       f"({num_devices})")
    return requested
  return max(d for d in range(1, num_devices + 1) if num_devices % d == 0 and d <= num_points)


def pad_indices(n: int, multiple: int) -> list[int]:
  """0..n-1, then copies of the last point up to a multiple of `multiple` (their results are
  dropped): P points on D sweep devices with D not dividing P."""
  return list(range(n)) + [n - 1] * ((-n) % multiple)


@dataclasses.dataclass
class SweepLogger:
  """Splits each record's point axis over per-point MetricLoggers (padding rows dropped)."""
  loggers: list

  def log(self, step: int, record: Mapping[str, Any]) -> None:
    for i, logger in enumerate(self.loggers):
      logger.log(step, {n: np.asarray(v)[i] for n, v in record.items()}, console=i == 0)

  def close(self) -> None:
    for logger in self.loggers:
      logger.close()


# ----------------------------------------------------------------------------- running
def _json_value(v):
  return json.loads(json.dumps(v, default=lambda x: list(x) if isinstance(x, tuple) else str(x)))


def _check_manifest(path: str, manifest: dict) -> None:
  """A re-run (resume) must sweep the same points as the run in the workdir."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    old = json.load(f)
  was = [p["overrides"] for p in old.get("points", [])]
  now = [p["overrides"] for p in manifest["points"]]
  # (The configs themselves are compared point by point when each config.json is written.)
  if was != now:
    raise ValueError(f"{path}: this workdir holds a sweep of {old.get('config')!r} over "
                     f"{len(was)} other points ({was[:3]}...); resume it with the same --config "
                     "and --sweep or choose another --workdir")


def run_sweep(config: ml_collections.ConfigDict, points: Sequence[Point], workdir: str,
              *, where: str = "", spec: str = "", sweep_devices: int = 0) -> list[dict]:
  """Train every point of the sweep; returns per-point summaries (each with 'state', that
  point's final state on the host). Offline agents (train_offline's configs) and diffusion
  generators (configs/gta.py, configs/synther.py: train_diffusion's configs). Writes
  WORKDIR/sweep.json, per point WORKDIR/points/<name>/ (config.json, metrics.jsonl,
  summary.json, as a single run writes them; agents also normalization.json, generators a
  final checkpoint experiments/augment.py reads) and per program WORKDIR/groups/<g>/checkpoints
  (the stacked states and loop keys: the sweep checkpoints, and resumes, as one unit)."""
  from jaxaug.train import config_io  # pylint: disable=g-import-not-at-top

  mesh_lib.maybe_initialize_distributed(config.get("distributed", False))
  is_main = mesh_lib.is_main_process()
  if not points:
    raise ValueError("--sweep gives no points")
  validate_points(config, points, where)
  configs = [apply_overrides(config, p, where) for p in points]
  for c in configs:
    if int(c.get("num_seeds", 1)) != 1:
      raise ValueError(f"config.num_seeds={c.num_seeds}: a sweep replaces the seed axis; set "
                       "num_seeds=1 and sweep over seed (seed=range(n))")
    if "augment" in c and c.augment.get("source", ""):
      raise ValueError("config.augment.source (composed augmentation) is not supported in "
                       "sweeps; use augment.path (staged generated data) or separate runs")
  names = [point_name(i, p) for i, p in enumerate(points)]
  groups = group_points(configs)
  manifest = {
      "config": where, "spec": spec,
      "agent": config.get("agent_name") or f"generator:{config.get('method')}",
      "points": [{"index": i, "name": names[i], "overrides": _json_value(points[i]),
                  "group": next(g for g, idx in enumerate(groups) if i in idx)}
                 for i in range(len(points))],
      "groups": [{"index": g, "points": idx} for g, idx in enumerate(groups)],
      "num_devices": len(jax.devices()), "num_processes": jax.process_count()}
  path = os.path.join(workdir, "sweep.json")
  _check_manifest(path, manifest)
  if is_main:
    os.makedirs(workdir, exist_ok=True)
    from jaxaug.utils import atomic_write_text  # pylint: disable=g-import-not-at-top
    atomic_write_text(path, json.dumps(manifest, indent=2))
  pdirs = [os.path.join(workdir, "points", n) for n in names]
  if is_main:
    for c, d in zip(configs, pdirs):
      config_io.check_workdir_config(c, d)
  results: list = [None] * len(points)
  run_group = (_run_generator_group if is_generator_config(config) else
               _run_online_group if is_online_config(config) else _run_group)
  for g, idx in enumerate(groups):
    for i, res in zip(idx, run_group([configs[i] for i in idx], [pdirs[i] for i in idx],
                                      os.path.join(workdir, "groups", str(g)), is_main,
                                      sweep_devices)):
      results[i] = res
  return results


run_offline_sweep = run_sweep  # the name before generator sweeps


def _init_points(configs, keys, bucket_of, init_for) -> list:
  """Each point's initial state, one program per distinct `bucket_of(config)` (its points' seeds
  one after another with lax.map, as run_training does for seeds: no batched LAPACK call under
  vmap); point p uses the init key of a single run with its seed."""
  states: list = [None] * len(configs)
  buckets: dict[str, list[int]] = {}
  for i, c in enumerate(configs):
    buckets.setdefault(bucket_of(c).to_json_best_effort(sort_keys=True), []).append(i)
  for members in buckets.values():
    init_one = init_for(configs[members[0]])
    stacked = jax.device_get(jax.jit(lambda ks, f=init_one: jax.lax.map(f, ks))(
        jnp.stack([keys[i][0] for i in members])))
    for r, i in enumerate(members):
      states[i] = jax.tree.map(lambda x, r=r: x[r], stacked)
  return states


def _program(sub, states, keys, pdirs, num_steps: int, is_main: bool, sweep_devices):
  """(mesh, SweepAxis, (stacked state, stacked loop keys)) of one program over points `sub`,
  padded to a multiple of the sweep devices; its logger writes each point's metrics.jsonl."""
  # pylint: disable=g-import-not-at-top
  from jaxaug.train.logging import MetricLogger
  from jaxaug.train.loop import SweepAxis
  n_sweep = choose_sweep_devices(len(sub), len(jax.devices()), sweep_devices)
  mesh = mesh_lib.make_sweep_mesh(n_sweep)
  order = pad_indices(len(sub), n_sweep)
  stacked = (stack_states([states[sub[j]] for j in order]),
             jnp.stack([keys[sub[j]][1] for j in order]))
  dirs = [pdirs[i] for i in sub]
  make_logger = lambda step: SweepLogger([
      MetricLogger(d, num_steps, is_main=is_main, resume_step=step) for d in dirs])
  return mesh, SweepAxis(init=lambda: stacked, size=len(order), make_logger=make_logger), stacked


def _programs(subs, configs, states, keys, pdirs, is_main, sweep_devices):
  """Per program of a group: (sub, mesh, SweepAxis, (stacked state, stacked loop keys), its
  configs, its point dirs) (see _program)."""
  for sub in subs:
    mesh, axis, stacked = _program(sub, states, keys, pdirs, int(configs[0].num_steps),
                                   is_main, sweep_devices)
    yield sub, mesh, axis, stacked, [configs[i] for i in sub], [pdirs[i] for i in sub]


def _write_summary(point_dir: str, summary: dict, logged: bool, is_main: bool) -> dict:
  """Writes the point's summary.json; a re-run of a finished sweep (nothing logged) keeps the
  final metrics of the summary already there."""
  # pylint: disable=g-import-not-at-top
  from jaxaug.utils import atomic_write_text
  path = os.path.join(point_dir, "summary.json")
  if not logged and os.path.exists(path):
    with open(path) as f:
      summary = {**json.load(f), **summary}
  if is_main:
    atomic_write_text(path, json.dumps(summary, indent=2))
  return summary


def _run_group(configs, pdirs, gdir, is_main, sweep_devices) -> list[dict]:
  # pylint: disable=g-import-not-at-top
  from jaxaug import agents as agents_lib
  from jaxaug import envs
  from jaxaug.data import loaders, normalize, validate
  from jaxaug.train import config_io, offline
  from jaxaug.train.loop import LoopConfig, run_training, seed_keys

  c0 = configs[0]
  agent = agents_lib.get_agent(c0.agent_name)
  ds = loaders.load_dataset(c0.dataset)
  env_id, spec = offline.resolve_env(c0, ds)
  envs.check_dataset_layout(env_id, ds.obs_dim, ds.act_dim, source=c0.dataset)
  if c0.eval_episodes > 0:
    envs.require_env(env_id)
  validate.validate_dataset(ds, spec)
  data, sample_fn, obs_stats, reward_tf, _ = offline.prepare_run(c0, ds, spec, None)
  meta = {"env_id": env_id, "dataset": c0.dataset,
          "obs_stats": obs_stats.to_dict() if obs_stats is not None else None,
          "reward_transform": reward_tf.to_dict()}
  if is_main:
    for c, d in zip(configs, pdirs):
      config_io.save_config(c, d)
      normalize.save_stats(os.path.join(d, "normalization.json"), obs_stats, reward_tf)

  # Init: one program per distinct agent config (its points' seeds one after another, lax.map,
  # as run_training does for seeds); point p gets the keys of a single run with its seed.
  keys = [seed_keys(int(c.seed), 1) for c in configs]
  states = _init_points(configs, keys, lambda c: c.agent,
                        lambda c: (lambda k, a=c.agent: agent.init(k, spec, a)))
  # A float that changes no array of the state (a Python constant, e.g. inside an optimiser)
  # cannot vary inside one program: its values split the group like structure does.
  subs = split_group(
      configs, states, lambda c: jax.device_get(jax.jit(lambda k, a=c.agent: agent.init(
          k, spec, a))(keys[0][0])))
  results: list = [None] * len(configs)
  for sub, mesh, axis, _, sub_configs, sub_dirs in _programs(
      subs, configs, states, keys, pdirs, is_main, sweep_devices):
    eval_fn = None
    if c0.eval_episodes > 0:
      point_evals = [offline.make_eval_fn(agent, c, env_id, obs_stats) for c in sub_configs]

      def eval_fn(state, step, point_evals=point_evals, mesh=mesh):
        host = mesh_lib.gather_to_host(state, mesh)
        rows = [fn(jax.tree.map(lambda x, r=r: x[r], host), step)
                for r, fn in enumerate(point_evals)]
        return {n: np.asarray([row[n] for row in rows]) for n in rows[0]}
    state, last = run_training(
        cfg=LoopConfig.from_config(c0), workdir=gdir if len(sub) == len(configs) else
        f"{gdir}_{sub[0]}", init_fn=None, update_fn=agent.update, sample_fn=sample_fn,
        data=data, eval_fn=eval_fn, meta=meta, mesh=mesh, is_main=is_main, sweep=axis)
    host = mesh_lib.gather_to_host(state, mesh)
    for r, (i, c, d) in enumerate(zip(sub, sub_configs, sub_dirs)):
      summary = {"env_id": env_id, "dataset": c.dataset, "agent": c.agent_name,
                 "num_transitions": len(ds), "num_steps": c.num_steps,
                 **{k: np.asarray(v)[r].tolist() for k, v in last.items()}}
      summary = _write_summary(d, summary, bool(last), is_main)
      results[i] = dict(summary, state=jax.tree.map(lambda x, r=r: x[r], host))
  return results


def _run_generator_group(configs, pdirs, gdir, is_main, sweep_devices) -> list[dict]:
  """One structure group of a generator sweep (GTA / SynthER): as train_generator per point."""
  # pylint: disable=g-import-not-at-top
  from jaxaug.augment import pipeline, synther
  from jaxaug.diffusion import train as dtrain
  from jaxaug.nets.denoisers import count_params
  from jaxaug.train import config_io
  from jaxaug.train.checkpoint import Checkpointer
  from jaxaug.train.loop import LoopConfig, run_training, seed_keys

  c0 = configs[0]
  dataset, data = pipeline.prepare_data(c0)
  if c0.method == "synther":
    # train_generator's batch rule (the dataset, hence the batch, is one per group).
    batch = synther.training_batch_size(c0, len(dataset))
    if batch != c0.batch_size:
      configs = [copy.deepcopy(c) for c in configs]
      for c in configs:
        with c.unlocked():
          c.batch_size = batch
      c0 = configs[0]
  mod = pipeline.method_module(c0)
  n_params = count_params(jax.eval_shape(pipeline.init_fn(c0, data), jax.random.key(0)).params)
  meta = {"method": c0.method, "num_params": n_params, "dataset": c0.dataset,
          "dataset_size": len(dataset)}
  if is_main:
    for c, d in zip(configs, pdirs):
      config_io.save_config(c, d)

  keys = [seed_keys(int(c.seed), 1) for c in configs]
  states = _init_points(configs, keys, lambda c: c.diffusion,
                        lambda c: pipeline.init_fn(c, data))
  subs = split_group(configs, states, lambda c: jax.device_get(
      jax.jit(pipeline.init_fn(c, data))(keys[0][0])))
  results: list = [None] * len(configs)
  for sub, mesh, axis, stacked, sub_configs, sub_dirs in _programs(
      subs, configs, states, keys, pdirs, is_main, sweep_devices):
    sub_gdir = gdir if len(sub) == len(configs) else f"{gdir}_{sub[0]}"
    state, last = run_training(
        cfg=LoopConfig.from_config(c0), workdir=sub_gdir, init_fn=None,
        update_fn=dtrain.update, sample_fn=mod.sample_batch, data=data, meta=meta, mesh=mesh,
        is_main=is_main, sweep=axis)
    host = mesh_lib.gather_to_host(state, mesh)
    # The loop keys at the end (for the per-point checkpoints a single run would leave).
    ckpt = Checkpointer(os.path.join(sub_gdir, "checkpoints"), max_to_keep=None)
    final_step = ckpt.latest_step()
    _, rng_t = mesh_lib.shard_sweep(stacked, mesh)
    rngs = jax.device_get(mesh_lib.gather_to_host(
        ckpt.restore(final_step, {"state": state, "rng": rng_t})["rng"], mesh))
    ckpt.close()
    for r, (i, c, d) in enumerate(zip(sub, sub_configs, sub_dirs)):
      point_state = jax.tree.map(lambda x, r=r: x[r], host)
      summary = {"method": c.method, "dataset": c.dataset, "num_params": n_params,
                 "num_steps": c.num_steps,
                 **{k: np.asarray(v)[r].tolist() for k, v in last.items()}}
      summary = _write_summary(d, summary, bool(last), is_main)
      # The point's final checkpoint as train_diffusion leaves it (state and loop key at the last
      # step), so experiments/augment.py --workdir=<point dir> generates from it. Single process
      # only (orbax saves host arrays from one writer).
      if jax.process_count() == 1:
        pckpt = Checkpointer(os.path.join(d, "checkpoints"), max_to_keep=None)
        if final_step not in pckpt.all_steps():
          pckpt.save(final_step, {"state": point_state, "rng": rngs[r]}, dict(
              meta, step=final_step, last={n: (str(np.asarray(v).dtype), np.asarray(v)[r].tolist())
                                           for n, v in last.items()}))
        pckpt.close()
      results[i] = dict(summary, state=point_state)
  return results


def _run_online_group(configs, pdirs, gdir, is_main, sweep_devices) -> list[dict]:
  """Online agents (train_online's configs): each program is `online.train_online_points`, its
  points' loop states stacked and sharded over `sweep`, one env (or num_envs) per point."""
  # pylint: disable=g-import-not-at-top
  from jaxaug import agents as agents_lib
  from jaxaug import envs
  from jaxaug.train import online

  if jax.process_count() > 1:
    raise ValueError("online sweeps run in one process (their envs step on its host); launch "
                     "one sweep per host instead")
  c0 = configs[0]
  agent = agents_lib.get_agent(c0.get("agent_name") or "sac")
  spec = envs.env_spec(envs.resolve_env_id(c0.env_id))
  init_with = lambda c: jax.device_get(agent.init(jax.random.key(0), spec, c.agent))
  subs = split_group(configs, [init_with(c) for c in configs], init_with)
  results: list = [None] * len(configs)
  n_dev = len(jax.devices())
  for sub in subs:
    if sweep_devices:
      if n_dev % sweep_devices or len(sub) % sweep_devices:
        raise ValueError(f"--sweep_devices={sweep_devices} must divide the device count "
                         f"({n_dev}) and the program's {len(sub)} points (online points are "
                         "not padded: each has its own envs)")
      n_sweep = sweep_devices
    else:
      n_sweep = max(d for d in range(1, n_dev + 1) if n_dev % d == 0 and len(sub) % d == 0)
    summaries = online.train_online_points(
        [configs[i] for i in sub], [pdirs[i] for i in sub],
        gdir if len(sub) == len(configs) else f"{gdir}_{sub[0]}",
        mesh=mesh_lib.make_sweep_mesh(n_sweep), agent=agent)
    for i, summary in zip(sub, summaries):
      results[i] = summary
  del is_main
  return results

