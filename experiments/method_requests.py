"""One seed's request of a method comparison: a row's config, the control rows, the settings.

``compare_methods.py`` (and its ``--audit`` table, ``audit_methods.py``) run
every row of a seed as a plan of one request. A row's config is ``--config``,
then the method's settings (``--settings``, a module with ``apply(cfg,
method)``), then the ``--set`` overrides; a control row
(``gradient_ascent_lr<factor>x``) is gradient ascent at ``factor`` times its
learning rate. ``tune_methods.py`` reads the same settings files.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from experiments import common


def load_settings(path: str):
  """The settings module at ``path`` (``apply(cfg, method)``, optional ``SELECTION_SEED``)."""
  from jaxunlearn.errors import ConfigError
  if not Path(path).is_file():
    raise ConfigError(f"--settings {path} is not a file; give a settings module such as "
                      "configs/quick_methods.py")
  spec = importlib.util.spec_from_file_location("method_settings", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except
    # The settings file is user code: it may fail to be parsed or run.
    raise ConfigError(f"cannot load the settings file {path}: {type(e).__name__}: "
                      f"{str(e).splitlines()[0] if str(e) else ''}") from e
  if not callable(getattr(module, "apply", None)):
    raise ConfigError(f"the settings file {path} defines no apply(cfg, method); see "
                      "configs/quick_methods.py")
  return module


def control_label(factor: float) -> str:
  """``gradient_ascent_lr<factor>x``: gradient ascent at ``factor`` times its learning rate."""
  return f"gradient_ascent_lr{factor:g}x"


def control_factor(label: str) -> float | None:
  """The factor of a control row's label, None for a method's row."""
  prefix = "gradient_ascent_lr"
  if label.startswith(prefix) and label.endswith("x"):
    return float(label[len(prefix):-1])
  return None


def method_config(args, settings, seed: int, label: str):
  """The config of one row: ``--config``, the method's settings, then ``--set``."""
  factor = control_factor(label)
  method = "gradient_ascent" if factor is not None else label
  cfg = common.load_config(args.config)
  if getattr(args, "untuned", False):
    settings.apply(cfg, method, tuned=False)
  else:
    settings.apply(cfg, method)
  if factor is not None:
    cfg.unlearn.learning_rate = factor * cfg.unlearn.learning_rate
  for item in args.set:
    field, _, raw = item.partition("=")
    common.set_field(cfg, field, common.parse_value(raw))
  cfg.seed = seed
  return cfg


def seed_request(args, settings, seed: int, labels: list[str]):
  """The request of one seed: its config and one plan per row (``open_request``'s arguments)."""
  from jaxunlearn import plugins, request
  from jaxunlearn.errors import ConfigError
  configs = {label: method_config(args, settings, seed, label) for label in labels}
  base = configs[labels[0]]
  shared = {k: v for k, v in base.to_dict().items() if k != "unlearn"}
  for label, cfg in configs.items():
    if {k: v for k, v in cfg.to_dict().items() if k != "unlearn"} != shared:
      raise ConfigError(f"the settings of {label!r} change more than the unlearn block; every "
                        "row of a seed must share the original")
  for cfg in configs.values():
    plugins.add_blocks(cfg)
  if args.quiet:
    base.report.progress = False
  specs = [request.MethodSpec(label, configs[label].unlearn, f"method {label!r}")
           for label in labels]
  return base, specs
