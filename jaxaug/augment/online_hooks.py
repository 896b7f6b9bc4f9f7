"""Optional extras of the online loop (jaxaug.train.online): offline data and augmentation.

An *extras* object changes what the loop samples and may act between policy updates:

    aux                                   pytree passed into the loop's jitted step
    sample_fn(buf, key, n, aux)           replaces `replay.sample(buf, key, n)` (jittable)
    after_step(step, next_obs, reward, terminated, truncated, agent_state, buf)
    metrics(real_size) -> dict            merged into the loop's log lines
    state_dict() / load_state_dict(d)     saved in and restored from the loop's checkpoints

`from_config` builds one from the config: `OfflineMixer` for RLPD's symmetric sampling
(`config.offline_dataset`, `config.offline_ratio`), `ATraDiffAugmenter` when
`config.atradiff.enabled` (which also handles the offline share, for RLPD + ATraDiff), or None
(plain SAC/REDQ: the loop is unchanged).
"""

from __future__ import annotations

from typing import Any

from jaxaug.data import replay
from jaxaug.data.dataset import Transitions
from jaxaug.data.loaders import load_dataset
from jaxaug.types import EnvSpec


class OfflineMixer:
  """RLPD's symmetric sampling: every minibatch `offline_ratio` offline, the rest online."""

  def __init__(self, offline: Transitions, offline_ratio: float, batch_size: int):
    self.offline = offline
    self.ratios = (offline_ratio, 1.0 - offline_ratio)
    self.batch_size = batch_size

  @property
  def aux(self) -> dict:
    return {"offline": self.offline}

  def sample_fn(self, buf, key, n, aux):
    return replay.sample_mixed_n([aux["offline"], buf], self.ratios, key, n, self.batch_size)

  def after_step(self, *args, **kwargs) -> None:
    del args, kwargs

  def metrics(self, real_size: int | None = None) -> dict:
    return {}

  def state_dict(self) -> dict:
    return {}

  def load_state_dict(self, d: dict) -> None:
    del d


def _offline_transitions(config, spec: EnvSpec):
  ds = load_dataset(config.offline_dataset)
  if (ds.obs_dim, ds.act_dim) != (spec.obs_dim, spec.act_dim):
    raise ValueError(f"config.offline_dataset {config.offline_dataset!r} has obs/act dims "
                     f"{(ds.obs_dim, ds.act_dim)}, environment {spec.env_id} has "
                     f"{(spec.obs_dim, spec.act_dim)}")
  return ds, ds.transitions()


def from_config(config, spec: EnvSpec, workdir: str | None, max_episode_len: int = 1000,
                agent: Any = None) -> Any:
  """The extras the config asks for, or None. `agent`: the agent module the run trains (ATraDiff
  asks it for `td_error`); None = the one config.agent_name names."""
  ratio = float(config.get("offline_ratio", 0.0) or 0.0)
  use_offline = ratio > 0 and bool(config.get("offline_dataset", ""))
  if ratio > 0 and not use_offline:
    raise ValueError("config.offline_ratio > 0 needs config.offline_dataset (a dataset spec)")
  atradiff = config.get("atradiff")
  if atradiff is not None and atradiff.get("enabled", False):
    from jaxaug.augment.atradiff.online import ATraDiffAugmenter  # heavy: only when used
    offline = _offline_transitions(config, spec)[1] if use_offline else None
    return ATraDiffAugmenter(config, spec, workdir, offline_ratio=ratio if use_offline else 0.0,
                             offline=offline, max_episode_len=max_episode_len, agent=agent)
  if use_offline:
    return OfflineMixer(_offline_transitions(config, spec)[1], ratio, int(config.batch_size))
  return None
