import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

# One persistent XLA compilation cache for the whole test session, shared by the xdist workers
# and by the subprocesses tests start (they inherit the environment): many tests compile the
# same tiny programs (kill-and-resume tests run each job several times). Set before jax is
# imported; an explicit JAX_COMPILATION_CACHE_DIR wins. The size limit turns on jax's file lock,
# which makes concurrent writers safe. Compiled programs are the same with or without the cache.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(
      tempfile.gettempdir(), f"jaxaug-test-xla-cache-{os.getuid()}")
  os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(4 * 2**30))
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
