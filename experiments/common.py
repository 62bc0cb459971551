"""Shared plumbing of the experiments: configs, seeds, aggregation, outputs.

Every experiment runs the pipeline for each seed in its own work directory
(``OUT/work/seed<S>``), so stages shared across settings (the original, the
retrained model, the reference model) are trained once per seed and reused.
Outputs: ``OUT/<name>.json`` (every run's figures plus provenance),
``OUT/<name>.csv`` and ``OUT/<name>.md`` (mean ± std over seeds) and PNG plots.
"""

from __future__ import annotations

import argparse
import ast
import csv
import importlib.util
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))


def _set_item(text: str) -> str:
  if "=" not in text or not text.partition("=")[0].strip():
    raise argparse.ArgumentTypeError(f"--set takes FIELD=VALUE, e.g. train.epochs=5; got {text!r}")
  return text


def _config_file(text: str) -> str:
  text = str(Path(text).expanduser())   # --config=~/c.py, as a shell reads it
  if not Path(text).is_file():
    raise argparse.ArgumentTypeError(f"--config {text} is not a file; give a config file such "
                                     "as configs/quick.py")
  return text


def base_parser(description: str, default_config: str) -> argparse.ArgumentParser:
  from jaxunlearn import scripts
  p = scripts.parser(description)
  p.add_argument("--config", default=default_config, type=_config_file,
                 help="config file (configs/*.py)")
  p.add_argument("--seeds", default=[0], type=scripts.int_list("--seeds"),
                 help="comma-separated seeds, e.g. 0,1,2")
  p.add_argument("--out", required=True, type=scripts.out_dir(), help="output folder")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", type=_set_item,
                 help="config override, e.g. --set train.epochs=5 (repeatable)")
  return p


def load_config(path: str, overrides=()):
  """Loads ``get_config()`` from a config file and applies ``FIELD=VALUE`` overrides."""
  from jaxunlearn import config as config_lib
  from jaxunlearn.errors import ConfigError
  spec = importlib.util.spec_from_file_location("experiment_config", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
      raise ConfigError(f"config file {path} defines no get_config(); a config file returns a "
                        "ConfigDict from get_config() (see configs/quick.py)")
    cfg = module.get_config()
  except SystemExit as e:
    # A config file is user code; sys.exit() in it must not end the script with status 0.
    raise ConfigError(f"the config file {path} called sys.exit({e.code!r}) while it was "
                      "loaded; get_config() must return a ConfigDict (see configs/quick.py)"
                      ) from None
  config_lib.check_loaded(cfg, f"the config file {path}")
  for item in overrides:
    field, _, raw = item.partition("=")
    set_field(cfg, field, parse_value(raw))
  return cfg


def parse_value(raw: str):
  try:
    return ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    return raw


def set_field(cfg, field: str, value) -> None:
  """``cfg.<field> = value`` for a dotted ``field`` that exists (plugin blocks included).

  Raises:
    ConfigError: the field does not exist (with the nearest name), or ``value`` is not of
      its type (naming the field, the value and the type).
  """
  import difflib

  import ml_collections

  from jaxunlearn import plugins, scripts
  plugins.add_blocks(cfg)
  parts = field.strip().split(".")
  node = cfg
  for depth, part in enumerate(parts):
    if not isinstance(node, ml_collections.ConfigDict):
      raise scripts.unknown_field(field, note=f"{'.'.join(parts[:depth])} is a value, not a "
                                              "block")
    free = depth == len(parts) - 1 and parts[:-1] == ["model_kwargs"]   # the model's own
    if part not in node and not free:
      close = difflib.get_close_matches(part, [str(k) for k in node.keys()], n=1)
      raise scripts.unknown_field(field, name=".".join(parts[:depth + 1]),
                                  guess=close[0] if close else None)
    if depth < len(parts) - 1:
      node = node[part]
  try:
    node[parts[-1]] = value
  except TypeError:
    raise scripts.bad_value(field, value, node[parts[-1]]) from None


def seeds(value) -> list[int]:
  """The seeds of ``--seeds``: a parsed list, or comma-separated text."""
  if isinstance(value, (list, tuple)):
    return [int(s) for s in value]
  return [int(s) for s in str(value).split(",") if s.strip()]


def run(cfg, workdir: Path, quiet: bool = True) -> dict:
  from jaxunlearn import pipeline
  if quiet:
    cfg.report.progress = False
  return pipeline.run(cfg, workdir)


def get(results: dict, path: str, default=None):
  """``get(r, 'models.unlearned.acc_test')``; ``default`` when any key is missing."""
  node = results
  for key in path.split("."):
    if not isinstance(node, dict) or key not in node:
      return default
    node = node[key]
  return node


def mean_std(values):
  values = [v for v in values if v is not None]
  if not values:
    return None, None
  return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fmt(mean, std) -> str:
  if mean is None:
    return "n/a"
  digits = 2 if abs(mean) >= 10 else 4
  return f"{mean:.{digits}f} ± {std:.{digits}f}" if std else f"{mean:.{digits}f}"


def provenance(cfg=None) -> dict:
  from jaxunlearn import results
  out = {"environment": results.environment(), "command": " ".join(sys.argv)}
  if cfg is not None:
    out["config"] = cfg.to_dict()
  return out


def write_outputs(out: Path, name: str, header: list[str], rows: list[list], runs: list[dict],
                  meta: dict, note: str = "") -> str:
  """Writes ``name.json`` (runs + meta), ``name.csv`` and ``name.md``; returns the Markdown."""
  out.mkdir(parents=True, exist_ok=True)
  with open(out / f"{name}.json", "w") as f:
    json.dump({"runs": runs, **meta}, f, indent=2, default=str)
  with open(out / f"{name}.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows(rows)
  env = meta.get("environment", {})
  lines = [f"# {name}", "", note, "" if note else None,
           "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
  lines += ["", f"Command: `{meta.get('command', '')}`", "",
            f"Machine: {env.get('device')} ({env.get('backend')}), jax {env.get('jax')}, "
            f"flax {env.get('flax')}, host {env.get('host')}."]
  text = "\n".join(x for x in lines if x is not None) + "\n"
  (out / f"{name}.md").write_text(text)
  return text


def plot(path: Path, panels: list[dict], title: str = "") -> None:
  """Line plots: each panel ``{'x': [...], 'series': {label: (means, stds)}, 'xlabel', 'ylabel', 'logx'}``."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
  for ax, panel in zip(axes[0], panels):
    for label, (means, stds) in panel["series"].items():
      if all(m is None for m in means):
        continue
      xs = [x for x, m in zip(panel["x"], means) if m is not None]
      ms = [m for m in means if m is not None]
      ss = [s or 0.0 for m, s in zip(means, stds) if m is not None]
      ax.errorbar(xs, ms, yerr=ss, marker="o", capsize=3, label=label)
    if panel.get("logx"):
      ax.set_xscale("log")
    ax.set_xlabel(panel["xlabel"])
    ax.set_ylabel(panel["ylabel"])
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
