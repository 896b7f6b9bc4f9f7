"""jaxaug: diffusion models for reinforcement learning in JAX.

Trajectory diffusion models trained on RL data (GTA, SynthER, ATraDiff), diffusion-regularised
policies (DTQL) and the offline/online RL agents they plug into, all as pure functions composed
into one data-parallel jitted train step.
"""

__version__ = "0.1.0"
