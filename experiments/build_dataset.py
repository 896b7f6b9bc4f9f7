"""Build D4RL-style datasets locally (see jaxaug/data/builder.py for the kinds' meanings).

  python experiments/build_dataset.py --env=hopper \\
      --kinds=random,medium,medium-replay,expert,medium-expert --out=DIR

Killable and resumable: re-run the same command; the SAC run resumes from its checkpoint and
finished datasets are skipped.

Suites (AntMaze, Maze2D, FrankaKitchen, Adroit, Meta-World; needs the `suites` extra): a small
D4RL-layout file OUT/<env>.hdf5 from a scripted or random policy, for tests and the CPU path,
NOT D4RL's data (docs/suites.md):

  python experiments/build_dataset.py --env=maze2d-umaze-v1 --size=20000 --out=DIR
  python experiments/build_dataset.py --env=antmaze-umaze-v2 --suite_policy=random --out=DIR
"""

from __future__ import annotations

import json

from absl import app, flags

from jaxaug.data import builder
from jaxaug.train.config_io import parse_flags

_ENV = flags.DEFINE_string("env", "hopper", "Environment (hopper, Hopper-v5, ...).")
_KINDS = flags.DEFINE_list("kinds", list(builder.KINDS), "Datasets to build.")
_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_SIZE = flags.DEFINE_integer("size", 1_000_000, "Transitions of random/medium/expert "
                             "(medium-expert: twice; medium-replay: the whole SAC replay).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the SAC run and of the rollouts.")
_SAC_PRESET = flags.DEFINE_string("sac_preset", "", "configs/sac.py preset ('' = the env's).")
_SAC_STEPS = flags.DEFINE_integer("sac_steps", 1_000_000, "SAC env steps for the expert.")
_MEDIUM_FRACTION = flags.DEFINE_float(
    "medium_fraction", 1.0 / 3.0, "Medium = the first SAC evaluation whose return reaches this "
    "fraction of the expert's evaluation return (D4RL: ~1/3).")
_MEDIUM = flags.DEFINE_float("medium_score", None, "Instead: the first evaluation reaching "
                             "this normalised score.")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", 5000, "SAC evaluation period (env steps).")
_CKPT_EVERY = flags.DEFINE_integer("checkpoint_every", 25_000, "SAC checkpoint period.")
_EXPERT = flags.DEFINE_enum("expert", "best", ["best", "last"], "Expert = the SAC snapshot "
                            "with the best evaluation return, or the last one.")
_MINARI = flags.DEFINE_bool("minari", False, "Also write Minari dataset directories.")
_SUITE_POLICY = flags.DEFINE_enum(
    "suite_policy", None, list(builder.SUITE_POLICIES), "Suites: collection policy (default: "
    "scripted for maze2d and Meta-World, random otherwise).")
_SUITE_NOISE = flags.DEFINE_float("suite_noise", 0.3, "Suites: Gaussian action noise (std) "
                                  "added to the scripted policy.")
_SAC_SET = flags.DEFINE_multi_string("sac_set", [], "SAC config override FIELD=JSON_VALUE, "
                                     "e.g. --sac_set=eval_episodes=5.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from jaxaug import envs
  env_id = envs.resolve_env_id(_ENV.value)
  if envs.suites.is_suite_env(env_id):
    policy = _SUITE_POLICY.value or (
        "scripted" if envs.suites.suite_env(env_id).suite in ("maze2d", "metaworld")
        else "random")
    print(json.dumps(builder.build_suite_dataset(
        _ENV.value, _OUT.value, _SIZE.value, seed=_SEED.value, policy=policy,
        noise=_SUITE_NOISE.value, command=builder.command_line()), indent=2))
    return
  overrides = []
  for item in _SAC_SET.value:
    if "=" not in item:
      raise app.UsageError(f"--sac_set expects FIELD=VALUE, got {item!r}")
    k, v = item.split("=", 1)
    try:
      value = json.loads(v)
    except json.JSONDecodeError:
      value = v
    overrides.append((k, tuple(value) if isinstance(value, list) else value))
  opts = builder.BuildOptions(
      env_id=_ENV.value, out=_OUT.value, kinds=tuple(_KINDS.value), size=_SIZE.value,
      seed=_SEED.value, sac_preset=_SAC_PRESET.value, sac_steps=_SAC_STEPS.value,
      medium_fraction=_MEDIUM_FRACTION.value, medium_score=_MEDIUM.value, expert=_EXPERT.value,
      eval_every=_EVAL_EVERY.value,
      checkpoint_every=_CKPT_EVERY.value, sac_overrides=tuple(overrides), minari=_MINARI.value,
      command=builder.command_line())
  try:
    print(json.dumps(builder.build(opts), indent=2))
  except builder.Preempted as e:  # SIGTERM: checkpointed, resumable
    print(str(e))
    raise SystemExit(3) from e


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
