r"""The GTA results on one dataset: quality of original / S4RL / SynthER / GTA data and an
offline agent (TD3+BC by default) without augmentation and with S4RL, SynthER and GTA, each arm
under its paper's protocol (jaxaug.augment.study.Protocol: SynthER on generated data only, S4RL
with fresh noise per update, GTA on original + generated data, batch 1024 for every arm).

  python experiments/gta_study.py --workdir=runs/gta_hopper \
      --dataset=embedded:hopper-medium-replay \
      --gta=configs/gta.py:tiny --gta.num_steps=5000 --gta.num_transitions=50000 \
      --synther=configs/synther.py:tiny --synther.num_steps=5000 \
      --synther.num_transitions=50000 \
      --agent=configs/td3bc.py:small --agent.num_steps=10000 --agent.num_seeds=3

Every stage checkpoints into WORKDIR and re-running resumes (finished stages are skipped).
Prints the quality table and the scores; writes WORKDIR/study.json.
"""

from absl import app, flags
from ml_collections import config_flags

from jaxaug.augment import study
from jaxaug.train.logging import quiet_third_party_logs

_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.")
_DATASET = flags.DEFINE_string("dataset", "embedded:hopper-medium-replay", "Dataset spec.")
_METHODS = flags.DEFINE_list("methods", list(study.METHODS), "Augmentations to generate.")
_AGENT_METHODS = flags.DEFINE_list("agent_methods", ["s4rl", "synther", "gta"],
                                   "Augmentations the agent is also trained with.")
_SYNTHER_MODE = flags.DEFINE_enum("synther_mode", "replace", ["replace", "concat"],
                                  "SynthER arm: generated data only (SynthER) or with the original.")
_S4RL_FIXED_COPY = flags.DEFINE_bool("s4rl_fixed_copy", False,
                                     "S4RL arm: one fixed noisy copy instead of fresh noise per "
                                     "update.")
_AGENT_BATCH = flags.DEFINE_integer("agent_batch_size", 1024,
                                    "Agent batch size of every arm (GTA: 1024); 0 = the agent "
                                    "config's.")
_GTA = config_flags.DEFINE_config_file("gta", "configs/gta.py:tiny", "GTA config.")
_SYNTHER = config_flags.DEFINE_config_file("synther", "configs/synther.py:tiny", "SynthER config.")
_AGENT = config_flags.DEFINE_config_file("agent", "configs/td3bc.py:small", "Offline agent config.")


def main(argv):
  del argv
  quiet_third_party_logs()
  result = study.run_study(_WORKDIR.value, _DATASET.value, methods=_METHODS.value,
                           generator_configs={"gta": _GTA.value, "synther": _SYNTHER.value},
                           agent_config=_AGENT.value, agent_methods=_AGENT_METHODS.value,
                           protocol=study.Protocol(
                               synther_mode=_SYNTHER_MODE.value,
                               s4rl_fixed_copy=_S4RL_FIXED_COPY.value,
                               agent_batch_size=_AGENT_BATCH.value or None))
  agent = _AGENT.value
  print(f"\nData quality ({result['env_id']}, {result['dataset']})\n{result['table']}")
  batch = _AGENT_BATCH.value or agent.batch_size
  print(f"\nD4RL-normalised score after {agent.num_steps} updates (batch {batch}), "
        f"{agent.num_seeds} seeds x {agent.eval_episodes} episodes")
  print(study.format_scores(result, agent_label=str(agent.agent_name)))


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
