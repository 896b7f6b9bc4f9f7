"""Process-level XLA settings that the experiment mains apply before JAX starts its backend.

XLA's CPU runtime can wedge on vmapped programs with its multi-threaded Eigen intra-op pool
enabled: the main thread waits in BlockUntilReady while every pool thread sleeps in
Eigen::EventCount::CommitWait (a lost wake-up). We saw it on the vmapped 3-seed DTQL step; it is
also reported elsewhere (e.g. PyAutoLabs/PyAutoFit#1528, hangs 14/16 runs with the pool on,
0/12 with it off). With `--xla_cpu_multi_thread_eigen=false` no hang has been seen (BUILD_NOTES,
"DTQL hang"). The flag only affects the CPU backend (GPU/TPU programs are untouched), and on our
workloads (256-wide MLPs, batch 256) a single-threaded Eigen costs no measurable speed.

`configure_xla_cpu()` adds the flag to XLA_FLAGS unless the user already set it either way, or
set JAXAUG_XLA_CPU_MULTI_THREAD_EIGEN=1 to keep XLA's default. It must run before the first
JAX computation in the process (XLA reads XLA_FLAGS once, when the backend starts): the mains
call it just before `app.run`. Code that imports jaxaug as a library is not affected.
"""

from __future__ import annotations

import os
from typing import MutableMapping

SYNC_DISPATCH = "JAXAUG_CPU_SYNC_DISPATCH"
EIGEN_FLAG = "--xla_cpu_multi_thread_eigen"
OPT_OUT = "JAXAUG_XLA_CPU_MULTI_THREAD_EIGEN"


def configure_xla_cpu(environ: MutableMapping[str, str] | None = None) -> str | None:
  """Turns XLA CPU's multi-threaded Eigen off; returns the new XLA_FLAGS or None if unchanged."""
  env = os.environ if environ is None else environ
  if env.get(SYNC_DISPATCH, "").strip() == "1" and environ is None:
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update("jax_cpu_enable_async_dispatch", False)
  if env.get(OPT_OUT, "").strip() == "1":
    return None
  flags = env.get("XLA_FLAGS", "")
  if EIGEN_FLAG.lstrip("-") in flags:
    return None  # the user's own setting wins
  env["XLA_FLAGS"] = f"{flags} {EIGEN_FLAG}=false".strip()
  return env["XLA_FLAGS"]
