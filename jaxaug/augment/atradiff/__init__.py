"""ATraDiff (Yang & Wang, ICML 2024): imaginary trajectories for online RL replay buffers.

  data.py        padded trajectories and length-k windows (Sec. 4.1)
  diffuser.py    state-conditioned EDM generators per length k; routed generation rounds
  length.py      length estimator, rounding up to the preset lengths
  pruner.py      non-parametric end detection from adjacent-state similarities
  buffer.py      the modified replay buffer D_o ∪ D_s (Sec. 4.2, Alg. 1)
  importance.py  TD-error heap and reward buffer (Sec. 4.3, App. A.1)
  adapt.py       online fine-tuning with a frozen original against forgetting (Sec. 4.3)
  training.py    the generators and length estimator trained through run_training
  online.py      ATraDiff as pure functions over the online loop's state (jaxaug.train.online)
"""
