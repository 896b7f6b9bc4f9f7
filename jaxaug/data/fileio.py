"""Small file helpers shared by the data layer: atomic writes and JSON-safe values.

Every writer in jaxaug writes to a temporary name in the destination's directory and renames
it into place (an atomic `os.replace` on one filesystem), so a crash never leaves a file that
looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Any, Iterator

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
  """Yields a temporary file name next to `path`; renames it to `path` on success.

  On an exception the temporary file is removed and `path` is left untouched.
  """
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp" + suffix,
                             dir=directory)
  os.close(fd)
  os.chmod(tmp, 0o644)  # mkstemp creates 0600; written files are ordinary readable files
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[str]:
  """Yields a temporary directory next to `path`; moves it to `path` on success.

  With `overwrite`, an existing `path` is replaced (moved aside first, removed after the new
  directory is in place); without it an existing `path` raises FileExistsError.
  """
  path = os.path.abspath(os.fspath(path))
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f"{path} already exists (pass overwrite=True to replace it)")
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
  os.chmod(tmp, 0o755)
  try:
    yield tmp
    old = None
    if os.path.exists(path):
      old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".old", dir=parent)
      os.rmdir(old)
      os.rename(path, old)
    os.rename(tmp, path)
    if old is not None:
      shutil.rmtree(old, ignore_errors=True)
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp, ignore_errors=True)


def to_jsonable(value: Any) -> Any:
  """Converts numpy scalars/arrays, bytes and tuples (recursively) to JSON-able values."""
  if isinstance(value, dict):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, (bytes, np.bytes_)):
    return value.decode("utf-8", errors="replace")
  if isinstance(value, np.ndarray):
    return to_jsonable(value.tolist())
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, (str, int, float, bool)) or value is None:
    return value
  return str(value)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
  with atomic_path(path) as tmp:
    with open(tmp, "w") as f:
      json.dump(to_jsonable(obj), f, indent=1, sort_keys=True)
