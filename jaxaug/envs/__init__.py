"""Environments: gymnasium factory, D4RL reference scores, evaluation."""

from jaxaug.envs.evaluation import evaluate, evaluate_groups, make_policy
from jaxaug.envs.registry import (D4RL_REFERENCE_SCORES, ENV_KWARGS, ReferenceScores,
                                  check_dataset_layout, env_spec, episode_scores, make_env,
                                  make_vector_env, normalized_score, observation_layout,
                                  reference_scores, require_env, resolve_env_id,
                                  scored_by_success, silence_mujoco_xml_warnings)

__all__ = [
    "D4RL_REFERENCE_SCORES", "ENV_KWARGS", "ReferenceScores", "env_spec", "evaluate",
    "evaluate_groups", "make_env",
    "make_policy",
    "make_vector_env", "normalized_score", "reference_scores", "resolve_env_id",
    "silence_mujoco_xml_warnings", "check_dataset_layout", "episode_scores",
    "observation_layout", "require_env", "scored_by_success",
]
