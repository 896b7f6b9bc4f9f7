r"""The GTA results on one dataset: quality of original / S4RL / SynthER / GTA data and an
offline agent (TD3+BC by default) without augmentation, with SynthER and with GTA.

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
_AGENT_METHODS = flags.DEFINE_list("agent_methods", ["synther", "gta"],
                                   "Augmentations the agent is also trained with.")
_GTA = config_flags.DEFINE_config_file("gta", "configs/gta.py:tiny", "GTA config.")
_SYNTHER = config_flags.DEFINE_config_file("synther", "configs/synther.py:tiny", "SynthER config.")
_AGENT = config_flags.DEFINE_config_file("agent", "configs/td3bc.py:small", "Offline agent config.")


def main(argv):
  del argv
  quiet_third_party_logs()
  result = study.run_study(_WORKDIR.value, _DATASET.value, methods=_METHODS.value,
                           generator_configs={"gta": _GTA.value, "synther": _SYNTHER.value},
                           agent_config=_AGENT.value, agent_methods=_AGENT_METHODS.value)
  agent = _AGENT.value
  print(f"\nData quality ({result['env_id']}, {result['dataset']})\n{result['table']}")
  print(f"\nD4RL-normalised score after {agent.num_steps} updates, {agent.num_seeds} seeds x "
        f"{agent.eval_episodes} episodes")
  print(study.format_scores(result, agent_label=str(agent.agent_name)))


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  app.run(main)
