"""jaxaug.data: datasets, loaders and writers, validation, normalisation, device replay."""

from jaxaug.data.dataset import (TRANSITION_FIELDS, OfflineDataset, Transitions, concatenate,
                                 sample_transitions)
from jaxaug.data.loaders import (available_embedded, load_dataset, save_d4rl_hdf5, save_minari,
                                 save_npz)
from jaxaug.data.normalize import (NormStats, RewardTransform, fit_reward_transform, load_stats,
                                   normalize_dataset, save_stats, transform_rewards)
from jaxaug.data import replay  # replay.add(buf, batch), replay.sample(buf, key, n)
from jaxaug.data.replay import ReplayBuffer, init_buffer, mixed_counts, sample_mixed
from jaxaug.data.validate import next_observation_breaks, validate_dataset

__all__ = [
    "TRANSITION_FIELDS", "OfflineDataset", "Transitions", "concatenate", "sample_transitions",
    "available_embedded", "load_dataset", "save_d4rl_hdf5", "save_minari", "save_npz",
    "NormStats", "RewardTransform", "fit_reward_transform", "load_stats", "normalize_dataset",
    "save_stats", "transform_rewards",
    "replay", "ReplayBuffer", "init_buffer", "mixed_counts", "sample_mixed",
    "next_observation_breaks", "validate_dataset",
]
