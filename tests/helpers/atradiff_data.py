"""A toy offline dataset of a few short episodes for the ATraDiff tests."""

import numpy as np

from jaxaug.data.dataset import OfflineDataset


def toy_dataset(lengths=(3, 5), obs_dim=2, act_dim=1, terminal_last=True, reward_shift=0.0):
  """Episodes of the given lengths, far apart; reward 1 + i (+ reward_shift) at step i; the
  last step of each episode terminal (terminal_last) or a timeout."""
  obs, act, rew, nxt, term, tout = [], [], [], [], [], []
  c = 0.0
  for t in lengths:
    for i in range(t):
      obs.append([c, -c][:obs_dim])
      nxt.append([c + 1, -(c + 1)][:obs_dim])
      act.append([0.1 * i] * act_dim)
      rew.append(1.0 + i + reward_shift)
      term.append(1.0 if (i == t - 1 and terminal_last) else 0.0)
      tout.append(1.0 if (i == t - 1 and not terminal_last) else 0.0)
      c += 1
    c += 10  # episodes far apart
  return OfflineDataset(np.array(obs), np.array(act), np.array(rew), np.array(nxt),
                        np.array(term), np.array(tout))
