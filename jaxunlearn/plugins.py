"""The plugin registries, the full default config, and validating a config through them.

:mod:`jaxunlearn.config` is the schema of the core fields and knows no
plugin. Plugins bring their own config blocks:

* unlearning methods (:mod:`jaxunlearn.methods`): ``unlearn.<method>``, their
  hyperparameters and options;
* evaluators (:mod:`jaxunlearn.evaluators`): ``<evaluator>`` (``mia``, ...);
* audit statistics (:mod:`jaxunlearn.audits`): ``audit.<statistic>``;
* data transforms (:mod:`jaxunlearn.transforms`): ``<transform>``.

Datasets (:mod:`jaxunlearn.data`) and models (:mod:`jaxunlearn.models`) are
registries too. This module imports the built-in plugins, builds
:func:`default_config` (the schema plus every plugin's block) and checks a
config through the schema and the registries (:func:`check_config`).
:func:`import_modules` imports the modules named in ``config.plugins``.
"""

from __future__ import annotations

import copy
import importlib
import sys

import ml_collections

from jaxunlearn import audits, config as config_lib, data, evaluators, methods, models
from jaxunlearn import deprecation as deprecation_lib, registry, transforms
from jaxunlearn.errors import ConfigError

__all__ = ["default_config", "check_config", "import_modules", "blocks", "add_blocks",
           "field_docs", "renamed_fields", "deprecation", "rename_flag", "apply_renames",
           "describe", "replaced", "listing"]


def import_modules(modules) -> None:
  """Imports each module named in ``config.plugins`` (they register their plugins)."""
  if isinstance(modules, str):
    modules = (modules,)
  for name in modules:
    if not isinstance(name, str) or not name:
      raise ConfigError(f"config.plugins must hold module names, got {name!r}; "
                        "e.g. --config.plugins='(\"my_methods\",)'")
    try:
      importlib.import_module(name)
    except ConfigError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      # A plugin is user code: it may be missing or fail on import.
      raise ConfigError(f"cannot import plugin module {name!r} ({type(e).__name__}: {e}); "
                        "put it on PYTHONPATH or fix it") from None


def _method_block(cls) -> dict:
  own = {h: float(v) for h, v in cls.hparams.items() if h not in cls.shared_hparams}
  own.update({o: v[0] for o, v in cls.options.items() if o not in cls.shared_hparams})
  return own


def blocks() -> list[tuple[str, ml_collections.ConfigDict, dict]]:
  """``(dotted path, default block, field docs)`` of every registered plugin's block."""
  out = []
  for name in evaluators.names():
    ev = evaluators.get(name)()
    with registry.guard("evaluator", name, ev, "config"):
      block = ev.config()
    if block is not None:
      out.append((name, block, dict(getattr(ev, "field_docs", {}))))
  for name in transforms.names():
    t = transforms.get(name)()
    with registry.guard("data transform", name, t, "config"):
      block = t.config()
    if block is not None:
      out.append((name, block, dict(t.field_docs)))
  for name in audits.names():
    st = audits.get(name)()
    with registry.guard("audit statistic", name, st, "config"):
      block = st.config()
    if block is not None:
      out.append((f"audit.{name}", block, dict(st.field_docs)))
  for name in methods.names():
    cls = methods.get(name)
    own = _method_block(cls)
    if own:
      out.append((f"unlearn.{name}", ml_collections.ConfigDict(own), dict(cls.hparam_docs)))
  return out


def _node(cfg, dotted: str, create: bool = False):
  node = cfg
  for part in dotted.split("."):
    if part not in node:
      if not create:
        return None
      node[part] = ml_collections.ConfigDict()
    node = node[part]
  return node


def add_blocks(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Adds every registered plugin's block that ``cfg`` lacks (and fields a block lacks)."""
  with cfg.unlocked():
    for path, block, _ in blocks():
      *parents, leaf = path.split(".")
      parent = _node(cfg, ".".join(parents), create=True) if parents else cfg
      if leaf not in parent:
        parent[leaf] = block
      elif isinstance(parent[leaf], ml_collections.ConfigDict):
        for k, v in block.items():
          if k not in parent[leaf]:
            parent[leaf][k] = v
  return cfg


def default_config() -> ml_collections.ConfigDict:
  """Every field with its default: the schema (:func:`config.base_config`) and every plugin's
  block. Config files start from it: ``c = plugins.default_config()``."""
  return add_blocks(config_lib.base_config())


def field_docs() -> dict[str, str]:
  """One-line descriptions of the plugin fields, by dotted path."""
  out = {}
  for path, block, docs in blocks():
    for k in block.keys():
      out[f"{path}.{k}"] = docs.get(k, "")
  return out


def renamed_fields() -> dict[str, str]:
  """``{old dotted path: new dotted path}``: old spellings that are still accepted."""
  out = dict(config_lib.RENAMED)
  for name in methods.names():
    for old, new in methods.get(name).renamed.items():
      out[f"unlearn.{name}.{old}"] = f"unlearn.{name}.{new}"
  return out


_TOLD: set = set()


def deprecation(old: str, new: str) -> None:
  """Prints one line (once per process) that ``old`` is now ``new``."""
  if (old, new) not in _TOLD:
    _TOLD.add((old, new))
    print(f"jaxunlearn: note: config field '{old}' is now '{new}'; the old name still works "
          "for now", file=sys.stderr)


def rename_flag(arg: str) -> str:
  """A ``--config.OLD=VALUE`` command-line override with its field's new name."""
  if not arg.startswith("--config."):
    return arg
  field, eq, value = arg[len("--config."):].partition("=")
  new = renamed_fields().get(field)
  if new is None:
    return arg
  deprecation(field, new)
  return f"--config.{new}{eq}{value}"


def apply_renames(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Moves fields given under an old name to their new name (one deprecation line each)."""
  if isinstance(cfg, ml_collections.FrozenConfigDict):
    return cfg
  with cfg.unlocked():
    for old, new in renamed_fields().items():
      *parents, leaf = old.split(".")
      parent = _node(cfg, ".".join(parents)) if parents else cfg
      if parent is None or leaf not in parent:
        continue
      value = parent[leaf]
      del parent[leaf]
      *new_parents, new_leaf = new.split(".")
      _node(cfg, ".".join(new_parents), create=True)[new_leaf] = value
      deprecation(old, new)
  return cfg


def check_config(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Imports ``cfg.plugins``, fills in plugin blocks, and checks every field.

  The schema checks the core fields (:func:`config.check_schema`); each
  selected plugin then checks what it owns: the method's hyperparameters and
  options, the evaluators and audit statistics listed. The caller's ``cfg``
  is not changed.

  Returns:
    a copy of ``cfg`` with old field names renamed and plugin blocks filled in
    (``cfg`` itself when it is frozen).

  Raises:
    ConfigError: naming the first bad field and how to fix it.
  """
  plugin_modules = cfg.get("plugins", ())
  if not isinstance(plugin_modules, (tuple, list, str)):
    raise ConfigError(f"config.plugins must be a tuple of module names, got {plugin_modules!r}")
  import_modules(plugin_modules)
  config_lib.check_core(cfg)
  if not isinstance(cfg, ml_collections.FrozenConfigDict):
    cfg = copy.deepcopy(cfg)
    apply_renames(cfg)
    add_blocks(cfg)
  config_lib.check_schema(cfg, default_config())
  methods.resolve_hparams(cfg.unlearn.method, cfg.unlearn)
  methods.resolve_method(cfg.unlearn.method, cfg.unlearn)
  evaluators.selected(cfg)
  audits.selected(cfg)
  models.get_model(cfg.model, 2, **cfg.model_kwargs.to_dict())
  return cfg


def describe(cfg) -> list[tuple[str, object, str]]:
  """``(dotted path, value, description)`` of every field of ``cfg``."""
  return config_lib.describe(cfg, field_docs())


def replaced() -> dict[str, str]:
  """Built-in plugins replaced by another one: ``{"<kind> <name>": "module.qualname"}``."""
  return registry.replaced()


def listing(kind: str) -> list[tuple[str, str]]:
  """``(name, one-line description)`` of every registered plugin of ``kind``
  (``methods``, ``evaluators``, ``statistics``, ``datasets``, ``models``, ``transforms``)."""
  if kind == "methods":
    out = []
    for name in methods.names():
      m = methods.get(name)()
      hp = ", ".join(f"{k}={v}" for k, v in m.hparams.items())
      out.append((name, (m.description or type(m).__doc__ or "").strip()
                  + (f" [{hp}]" if hp else "")
                  + (" (trains a reference model)" if m.needs_reference else "")))
    return out
  if kind == "evaluators":
    return [(n, (evaluators.get(n).title or "") + (" (always runs)" if evaluators.get(n).always
                                                   else "")) for n in evaluators.names()]
  if kind == "statistics":
    return [(n, audits.get(n).title) for n in audits.names()]
  if kind == "datasets":
    return [(data.usage(n), _first_line(data.get(n).__doc__)) for n in data.names()]
  if kind == "models":
    return [(n, _first_line(models.MODELS[n].__doc__)) for n in models.names()]
  if kind == "transforms":
    return [(n, transforms.get(n).description) for n in transforms.names()]
  raise ConfigError(f"unknown plugin kind {kind!r}")


def _first_line(doc) -> str:
  return (doc or "").strip().splitlines()[0] if (doc or "").strip() else ""


__getattr__ = deprecation_lib.module_getattr(__name__, {
    "validate": "jaxunlearn.plugins.check_config",
    "load": "jaxunlearn.plugins.import_modules",
})
