"""Conditional VAE behaviour model p(a | s) (BCQ, Fujimoto et al. 2019, Sec. 4; used by MCQ).

Encoder q(z | s, a) is a diagonal Gaussian; decoder a = max_action * tanh(f(s, z)). Sampling
from the prior draws z ~ N(0, I) clipped to [-latent_clip, latent_clip], which keeps samples
near the data manifold (BCQ's choice, kept by MCQ / OfflineRL-Kit). Randomness comes from an
explicit key argument.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxaug.nets.mlp import MLP


class ConditionalVAE(nn.Module):
  act_dim: int
  latent_dim: int
  hidden_dims: Sequence[int] = (750, 750)
  max_action: float = 1.0
  log_std_min: float = -4.0  # clamp of the encoder's log-std (numerical stability)
  log_std_max: float = 15.0
  latent_clip: float = 0.5

  def setup(self):
    self.encoder = MLP(self.hidden_dims, None)
    self.mean_head = nn.Dense(self.latent_dim)
    self.log_std_head = nn.Dense(self.latent_dim)
    self.decoder = MLP(self.hidden_dims, self.act_dim)

  def encode(self, obs: jax.Array, actions: jax.Array) -> tuple[jax.Array, jax.Array]:
    h = self.encoder(jnp.concatenate([obs, actions], axis=-1))
    log_std = jnp.clip(self.log_std_head(h), self.log_std_min, self.log_std_max)
    return self.mean_head(h), jnp.exp(log_std)

  def decode(self, obs: jax.Array, z: jax.Array) -> jax.Array:
    return self.max_action * jnp.tanh(self.decoder(jnp.concatenate([obs, z], axis=-1)))

  def __call__(self, obs: jax.Array, actions: jax.Array, key: jax.Array):
    """Reconstruction through a reparameterised posterior sample: (recon, mean, std)."""
    mean, std = self.encode(obs, actions)
    z = mean + std * jax.random.normal(key, mean.shape)
    return self.decode(obs, z), mean, std

  def sample(self, obs: jax.Array, key: jax.Array) -> jax.Array:
    """Actions from the clipped prior, one per observation (any leading shape)."""
    z = jax.random.normal(key, obs.shape[:-1] + (self.latent_dim,))
    return self.decode(obs, jnp.clip(z, -self.latent_clip, self.latent_clip))


def vae_loss(recon: jax.Array, actions: jax.Array, mean: jax.Array, std: jax.Array,
             kl_weight: float = 1.0) -> tuple[jax.Array, dict[str, jax.Array]]:
  """MSE reconstruction + kl_weight * KL(q(z|s,a) || N(0, I)), both averaged over elements."""
  recon_loss = jnp.mean(jnp.square(recon - actions))
  kl = -0.5 * jnp.mean(1.0 + 2.0 * jnp.log(std) - jnp.square(mean) - jnp.square(std))
  loss = recon_loss + kl_weight * kl
  return loss, {"vae_loss": loss, "vae_recon_loss": recon_loss, "vae_kl": kl}
