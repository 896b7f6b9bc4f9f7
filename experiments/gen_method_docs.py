r"""Fill the generated hyperparameter tables of docs/methods/*.md from the config files.

  python experiments/gen_method_docs.py            # rewrite the pages whose tables are stale
  python experiments/gen_method_docs.py --check    # exit 1 listing the stale pages (CI)
  python experiments/gen_method_docs.py docs/methods/dtql.md   # only these pages

Two kinds of block, written by hand in a page and (re)filled by this script:

  <!-- hparams config=configs/dtql.py preset=hopper-medium-replay -->
  | Paper hyperparameter | Paper value | Config field | jaxaug default |
  |---|---|---|---|
  | Learning rate | 3e-4 | `agent.lr` | |
  <!-- /hparams -->

    Columns 1-3 are written by hand; column 4 is rendered from `get_config(preset)` of the config
    file at the dotted field named (in backticks) in column 3. `preset=` may be left out (the
    file's default preset). A field the config lacks is an error naming page, block and field.

  <!-- hparams-grid config=configs/dtql.py fields=agent.lr,agent.trust_region_weight -->
  <!-- /hparams-grid -->

    Rendered whole: one row per preset (the config module's PRESETS, or `presets=a,b,c`), one
    column per field.

Config files are loaded the way the experiments load them (jaxaug.configs_io: the module's
`get_config(preset)`), so FieldReferences are resolved as a run would see them. Values are
rendered compactly and always the same way: 3e-4 and 0.0003 both as `3e-4`, ints >= 10000 with
underscores (`1_000_000`, which `--config.x=` accepts), tuples as `(256, 256)`, strings in
backticks. Running the script twice changes nothing the second time.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import re
import sys
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from ml_collections import FieldReference  # noqa: E402

from jaxaug.configs_io import load_config_module  # noqa: E402  (needs ROOT on sys.path)

PAGES_GLOB = os.path.join("docs", "methods", "*.md")
HPARAMS_HEADER = ("| Paper hyperparameter | Paper value | Config field | jaxaug default |",
                  "|---|---|---|---|")

_OPEN = re.compile(r"^<!--\s*(hparams|hparams-grid)\s+(.*?)\s*-->\s*$")
_CLOSE = {"hparams": re.compile(r"^<!--\s*/hparams\s*-->\s*$"),
          "hparams-grid": re.compile(r"^<!--\s*/hparams-grid\s*-->\s*$")}
_ATTRS = {"hparams": {"config": True, "preset": False},
          "hparams-grid": {"config": True, "fields": True, "presets": False}}
_MISSING = object()


class DocsError(ValueError):
  """A page that cannot be rendered: names the page, the block and what is wrong."""


# ------------------------------------------------------------------------------------------
# Values.


def _format_float(x: float) -> str:
  if math.isnan(x) or math.isinf(x):
    return repr(x)
  if x == 0:
    return "0.0"
  if 1e-3 <= abs(x) < 1e4:
    return repr(float(x))  # shortest round-trip form: 0.99, 5.0, 0.005
  mantissa, exponent = f"{x:.15e}".split("e")
  # shortest mantissa that still round-trips
  for digits in range(16):
    m = f"{x:.{digits}e}".split("e")[0]
    if float(f"{m}e{exponent}") == x:
      mantissa = m
      break
  return f"{mantissa}e{int(exponent)}"


def format_value(value: Any, top: bool = True) -> str:
  """The compact, stable text of a config value (a table cell)."""
  if isinstance(value, FieldReference):
    value = value.get()
  if isinstance(value, bool) or value is None:
    text = repr(value)
  elif isinstance(value, int):
    text = f"{value:_}" if abs(value) >= 10_000 else str(value)
  elif isinstance(value, float):
    text = _format_float(value)
  elif isinstance(value, str):
    # The user's home (e.g. the default data_dir ~/.d4rl/datasets) renders as `~`, so the tables
    # are the same on every machine.
    home = os.path.expanduser("~")
    if home not in ("", "/", "~"):
      value = value.replace(home, "~")
    text = repr(value) if top and not value else (f"`{value}`" if top else repr(value))
  elif isinstance(value, (tuple, list)):
    inner = ", ".join(format_value(v, top=False) for v in value)
    text = f"({inner}{',' if len(value) == 1 else ''})" if isinstance(value, tuple) else f"[{inner}]"
  elif hasattr(value, "items"):  # a ConfigDict or dict: {k: v} in key order
    text = "{" + ", ".join(f"{k}: {format_value(v, top=False)}" for k, v in value.items()) + "}"
  else:
    text = str(value)
  return text.replace("|", r"\|") if top else text


def lookup(config, dotted: str) -> Any:
  """config at `a.b.c` (attribute/key access resolves FieldReferences); _MISSING if absent."""
  node = config
  for part in dotted.split("."):
    try:
      node = node[part]
    except (KeyError, TypeError, IndexError, AttributeError):
      return _MISSING
  return node


# ------------------------------------------------------------------------------------------
# Config loading (cached per run).


class ConfigCache:
  def __init__(self, root: str):
    self.root = root
    self._modules: dict[str, Any] = {}
    self._configs: dict[tuple[str, str | None], Any] = {}

  def module(self, path: str, where: str):
    if path not in self._modules:
      full = path if os.path.isabs(path) else os.path.join(self.root, path)
      if not os.path.isfile(full):
        raise DocsError(f"{where}: config file {path!r} does not exist")
      self._modules[path] = load_config_module(full)
    return self._modules[path]

  def config(self, path: str, preset: str | None, where: str):
    key = (path, preset)
    if key not in self._configs:
      module = self.module(path, where)
      try:
        self._configs[key] = module.get_config(preset) if preset is not None else module.get_config()
      except Exception as e:  # unknown preset, or a config file that fails to build
        raise DocsError(f"{where}: {path}:{preset or ''} does not build: "
                        f"{type(e).__name__}: {e}") from e
    return self._configs[key]

  def presets(self, path: str, where: str) -> list[str]:
    module = self.module(path, where)
    presets = getattr(module, "PRESETS", None)
    if not presets:
      raise DocsError(f"{where}: {path} has no PRESETS; list them with presets=a,b,c")
    return list(presets)


# ------------------------------------------------------------------------------------------
# Blocks.


def _parse_attrs(kind: str, text: str, where: str) -> dict[str, str]:
  attrs = {}
  for token in text.split():
    name, eq, value = token.partition("=")
    if not eq or not value:
      raise DocsError(f"{where}: expected name=value, got {token!r}")
    if name not in _ATTRS[kind]:
      raise DocsError(f"{where}: unknown attribute {name!r}; expected {sorted(_ATTRS[kind])}")
    attrs[name] = value
  for name, required in _ATTRS[kind].items():
    if required and name not in attrs:
      raise DocsError(f"{where}: missing attribute {name}=")
  return attrs


def split_row(line: str) -> list[str]:
  """Cells of a markdown table row (`\\|` stays inside a cell)."""
  body = line.strip()
  if not (body.startswith("|") and body.endswith("|")):
    return []
  cells = re.split(r"(?<!\\)\|", body[1:-1])
  return [c.strip() for c in cells]


def _field_of(cell: str) -> str:
  m = re.search(r"`([^`]+)`", cell)
  return (m.group(1) if m else cell).strip()


def render_hparams(body: list[str], attrs: dict[str, str], cache: ConfigCache,
                   where: str) -> list[str]:
  config = cache.config(attrs["config"], attrs.get("preset"), where)
  rows = [line for line in body if line.strip()]
  out = list(HPARAMS_HEADER)
  if rows and split_row(rows[0])[:3] == split_row(HPARAMS_HEADER[0])[:3]:
    rows = rows[1:]
  if rows and re.fullmatch(r"\|?(\s*:?-+:?\s*\|)+\s*", rows[0].strip()):
    rows = rows[1:]
  for line in rows:
    cells = split_row(line)
    if len(cells) < 3:
      raise DocsError(f"{where}: row {line.strip()!r}: expected | name | paper value | "
                      "`config.field` | default |")
    field = _field_of(cells[2])
    value = lookup(config, field)
    if value is _MISSING:
      raise DocsError(f"{where}: config field {field!r} does not exist in "
                      f"{attrs['config']}:{attrs.get('preset', '')}")
    out.append(f"| {cells[0]} | {cells[1]} | {cells[2]} | {format_value(value)} |")
  return out


def render_grid(attrs: dict[str, str], cache: ConfigCache, where: str) -> list[str]:
  fields = [f.strip() for f in attrs["fields"].split(",") if f.strip()]
  if not fields:
    raise DocsError(f"{where}: fields= names no field")
  presets = ([p.strip() for p in attrs["presets"].split(",") if p.strip()]
             if "presets" in attrs else cache.presets(attrs["config"], where))
  out = ["| Preset | " + " | ".join(f"`{f}`" for f in fields) + " |",
         "|---|" + "---|" * len(fields)]
  for preset in presets:
    config = cache.config(attrs["config"], preset, where)
    cells = []
    for field in fields:
      value = lookup(config, field)
      if value is _MISSING:
        raise DocsError(f"{where}: config field {field!r} does not exist in "
                        f"{attrs['config']}:{preset}")
      cells.append(format_value(value))
    out.append(f"| `{preset}` | " + " | ".join(cells) + " |")
  return out


def render_page(text: str, page: str, cache: ConfigCache) -> str:
  """The page with every generated block (re)filled. Raises DocsError."""
  lines = text.split("\n")
  out: list[str] = []
  i = 0
  while i < len(lines):
    line = lines[i]
    m = _OPEN.match(line.strip())
    if not m:
      if any(c.match(line.strip()) for c in _CLOSE.values()):
        raise DocsError(f"{page}:{i + 1}: closing marker without an opening one")
      out.append(line)
      i += 1
      continue
    kind, where = m.group(1), f"{page}:{i + 1} ({line.strip()})"
    attrs = _parse_attrs(kind, m.group(2), where)
    end = i + 1
    while end < len(lines) and not _CLOSE[kind].match(lines[end].strip()):
      if _OPEN.match(lines[end].strip()):
        raise DocsError(f"{where}: a new block opens at line {end + 1} before <!-- /{kind} -->")
      end += 1
    if end == len(lines):
      raise DocsError(f"{where}: no closing <!-- /{kind} -->")
    body = lines[i + 1:end]
    rendered = (render_hparams(body, attrs, cache, where) if kind == "hparams"
                else render_grid(attrs, cache, where))
    out.append(line)
    out.extend(rendered)
    out.append(lines[end])
    i = end + 1
  return "\n".join(out)


# ------------------------------------------------------------------------------------------
# Command line.


def default_pages(root: str) -> list[str]:
  return sorted(glob.glob(os.path.join(root, PAGES_GLOB)))


def run(pages: list[str], root: str, check: bool, log: Callable[[str], None] = print) -> int:
  """Renders `pages`; writes them (or, with check, lists stale ones). Returns the exit code."""
  cache = ConfigCache(root)
  stale, errors = [], []
  for page in pages:
    with open(page, encoding="utf-8") as f:
      text = f.read()
    name = os.path.relpath(page, root)
    try:
      new = render_page(text, name, cache)
    except DocsError as e:
      errors.append(str(e))
      continue
    if new != text:
      stale.append(name)
      if not check:
        with open(page, "w", encoding="utf-8") as f:
          f.write(new)
  for e in errors:
    log(f"error: {e}")
  if check and stale:
    log("out of date (run python experiments/gen_method_docs.py): " + ", ".join(stale))
  elif stale:
    log("updated: " + ", ".join(stale))
  if errors:
    return 2
  return 1 if check and stale else 0


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("pages", nargs="*", help="pages to render (default: docs/methods/*.md)")
  parser.add_argument("--check", action="store_true",
                      help="write nothing; exit 1 listing the pages that are out of date")
  parser.add_argument("--root", default=ROOT, help="repository root (config paths are relative "
                      "to it)")
  args = parser.parse_args(argv)
  pages = args.pages or default_pages(args.root)
  return run(pages, args.root, args.check)


if __name__ == "__main__":
  sys.exit(main())
