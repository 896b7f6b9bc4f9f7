"""Process-level XLA settings that the experiment mains apply before JAX starts its backend.

A known, not root-caused problem: on XLA:CPU (jax/jaxlib 0.10.2) a jitted program sometimes
never finishes. The main thread waits in BlockUntilReady (in `device_get`, or inside `Execute`
with synchronous dispatch) while every runtime thread sleeps; CPU use drops to zero. We see it
with vmapped 3-seed DTQL programs (both the K-update dispatch and the vmapped init), a few
minutes in or at the first log step. It is reported elsewhere for vmapped programs too
(PyAutoLabs/PyAutoFit#1528: 14 hangs in 16 runs with XLA's multi-threaded Eigen pool, 0 in 12
without). Our own trials (BUILD_NOTES, "XLA on CPU") show fewer hangs with the pool off but not
none, so `--xla_cpu_multi_thread_eigen=false` is a mitigation, not a fix. It costs no measurable
speed on our workloads (256-wide MLPs at batch 256 do not parallelise usefully on small CPUs)
and only affects the CPU backend. Long runs checkpoint and resume exactly, so a hung run is
recovered by killing it and re-running the same command.

`configure_xla_cpu()` adds the flag to XLA_FLAGS unless the user already set it either way, or
set JAXAUG_XLA_CPU_MULTI_THREAD_EIGEN=1 to keep XLA's default. It must run before the first
JAX computation in the process (XLA reads XLA_FLAGS once, when the backend starts): the mains
call it just before `app.run`. Code that imports jaxaug as a library is not affected.
"""

from __future__ import annotations

import os
from typing import MutableMapping

EIGEN_FLAG = "--xla_cpu_multi_thread_eigen"
OPT_OUT = "JAXAUG_XLA_CPU_MULTI_THREAD_EIGEN"


def configure_xla_cpu(environ: MutableMapping[str, str] | None = None) -> str | None:
  """Turns XLA CPU's multi-threaded Eigen off; returns the new XLA_FLAGS or None if unchanged."""
  env = os.environ if environ is None else environ
  if env.get(OPT_OUT, "").strip() == "1":
    return None
  flags = env.get("XLA_FLAGS", "")
  if EIGEN_FLAG.lstrip("-") in flags:
    return None  # the user's own setting wins
  env["XLA_FLAGS"] = f"{flags} {EIGEN_FLAG}=false".strip()
  return env["XLA_FLAGS"]
