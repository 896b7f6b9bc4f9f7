r"""The main job, end to end on the embedded Hopper dataset (a few minutes on 2 CPU cores):

  1. train GTA's trajectory diffusion model (configs/gta.py:tiny),
  2. augment: partial noising + amplified-return guidance -> generated transitions,
  3. data quality of the original, S4RL and GTA data (oracle reward, dynamic MSE, novelty),
  4. TD3+BC (configs/td3bc.py:tiny with its batch, vmapped seeds) on the original data and on
     original + GTA,
  5. print both tables and write WORKDIR/study.json.

  python experiments/quickstart.py --workdir=runs/quickstart

Every stage checkpoints into WORKDIR; re-running resumes where it stopped.
"""

from absl import app, flags

from jaxaug.augment import study
from jaxaug.configs_io import load_config_file
from jaxaug.train.logging import quiet_third_party_logs

_WORKDIR = flags.DEFINE_string("workdir", "runs/quickstart", "Output directory.")
_DATASET = flags.DEFINE_string("dataset", "embedded:hopper-medium-replay", "Dataset spec.")
_SEEDS = flags.DEFINE_integer("num_seeds", 3, "TD3+BC seeds (vmapped in one program).")
_TD3BC_STEPS = flags.DEFINE_integer("td3bc_steps", 3000, "TD3+BC updates per run.")
_GTA_STEPS = flags.DEFINE_integer("gta_steps", 1000, "GTA diffusion training steps.")
_NUM_GEN = flags.DEFINE_integer("num_transitions", 5000, "Generated transitions.")
_EVAL_EPISODES = flags.DEFINE_integer("eval_episodes", 5, "Evaluation episodes per seed.")


def main(argv):
  del argv
  quiet_third_party_logs()
  gcfg = load_config_file("gta:tiny")
  gcfg.num_steps = _GTA_STEPS.value
  gcfg.checkpoint_every = _GTA_STEPS.value
  gcfg.log_every = min(gcfg.log_every, _GTA_STEPS.value)
  gcfg.num_transitions = _NUM_GEN.value

  c = load_config_file("td3bc:tiny")
  c.num_steps = _TD3BC_STEPS.value
  c.eval_every = _TD3BC_STEPS.value
  c.checkpoint_every = _TD3BC_STEPS.value
  c.log_every = 1000 if _TD3BC_STEPS.value % 1000 == 0 else _TD3BC_STEPS.value
  c.num_seeds = _SEEDS.value
  c.eval_episodes = _EVAL_EPISODES.value

  result = study.run_study(_WORKDIR.value, _DATASET.value, methods=("s4rl", "gta"),
                           generator_configs={"gta": gcfg}, agent_config=c,
                           agent_methods=("gta",),
                           # the tiny preset's batch (the paper protocol's 1024 is 4x slower)
                           protocol=study.Protocol(agent_batch_size=None))
  print(f"\nData quality ({result['env_id']}, {_DATASET.value})\n{result['table']}")
  print(f"\nD4RL-normalised score after {_TD3BC_STEPS.value} TD3+BC updates, "
        f"{_SEEDS.value} seeds x {_EVAL_EPISODES.value} episodes")
  print(study.format_scores(result, agent_label="TD3+BC"))


if __name__ == "__main__":
  app.run(main)
