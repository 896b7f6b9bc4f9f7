"""Environments: gymnasium factory, D4RL reference scores, evaluation."""

from jaxaug.envs.evaluation import evaluate
from jaxaug.envs.registry import (D4RL_REFERENCE_SCORES, ENV_KWARGS, ReferenceScores, env_spec,
                                  make_env, make_vector_env, normalized_score, reference_scores,
                                  resolve_env_id, silence_mujoco_xml_warnings)

__all__ = [
    "D4RL_REFERENCE_SCORES", "ENV_KWARGS", "ReferenceScores", "env_spec", "evaluate", "make_env",
    "make_vector_env", "normalized_score", "reference_scores", "resolve_env_id",
    "silence_mujoco_xml_warnings",
]
