"""Standalone reproducer of a jaxlib CPU deadlock in batched LAPACK kernels (no jaxaug code).

jaxlib 0.10.0 to 0.11.0 split one batched LAPACK call (here: QR over a batch of matrices, the
kernel behind orthogonal initialisation under `vmap`) into chunks that run on XLA's intra-op
thread pool, and the calling pool thread blocks until its chunks finish. When every pool thread
is such a caller (two cores: two threads; one program with several independent batched QRs),
no thread is left to run the chunks and the process never finishes. gdb shows each pool thread
in `BlockingCounter::Wait <- ParallelBatchMap <- lapack_sgeqrf_ffi`. Later jaxlib releases do
not parallelise LAPACK kernels this way, and the program finishes.

Usage: python tools/lapack_deadlock_repro.py [--calls 16] [--batch 8] [--size 64] [--repeats 20]
Prints 'finished' and exits 0 when every repeat completes; a hang is detected by the caller's
watchdog (tests/test_xla_cpu.py runs it with a timeout).
"""
import argparse
import time

import jax
import jax.numpy as jnp


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--calls", type=int, default=16, help="independent batched QRs in one program")
  p.add_argument("--batch", type=int, default=8, help="matrices per batched QR")
  p.add_argument("--size", type=int, default=64, help="matrix side")
  p.add_argument("--repeats", type=int, default=20, help="fresh inputs per process")
  a = p.parse_args()

  @jax.jit
  def many_qrs(key):
    keys = jax.random.split(key, a.calls)
    mats = [jax.random.normal(k, (a.batch, a.size, a.size)) for k in keys]
    return sum(jnp.linalg.qr(m)[0].sum() for m in mats)

  print(f"jax {jax.__version__}, jaxlib {jax.lib.__version__ if hasattr(jax.lib, '__version__') else ''}",
        flush=True)
  t0 = time.perf_counter()
  for i in range(a.repeats):
    many_qrs(jax.random.key(i)).block_until_ready()
  print(f"finished {a.repeats} repeats in {time.perf_counter() - t0:.2f} s", flush=True)


if __name__ == "__main__":
  main()
