"""The config schema: every core field, its default, its one-line description, its checks.

:data:`SCHEMA` is the single place where a core field is declared and
described; :func:`base_config` builds the default ``ConfigDict`` from it and
:func:`describe` lists it. This module knows no plugin: methods, evaluators,
audit statistics and data transforms bring their own blocks
(``unlearn.<method>``, ``<evaluator>``, ``audit.<statistic>``, ...), and
:mod:`jaxunlearn.plugins` adds them (``plugins.default_config()``) and has the
registries validate them.

:func:`check_schema` rejects unknown keys, wrong types and values out of range
with a :class:`ConfigError` that names the field and says how to fix it.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, NamedTuple

import ml_collections

from jaxunlearn import deprecation
from jaxunlearn.errors import ConfigError

__all__ = ["base_config", "describe", "Field", "SCHEMA", "FIELDS", "RENAMED", "UNLEARN_FIELDS",
           "REFERENCE_SOURCES", "STOP_RULES", "check_schema", "check_unlearn_block", "check_field",
           "check_value", "resolve_seed", "resolve_size", "flat_items", "mutable_copy",
           "check_loaded", "check_core"]


class Field(NamedTuple):
  """One config field: its default, what it means, and what values it takes."""
  default: Any
  doc: str
  choices: tuple | Callable[[], tuple] | None = None   # allowed values (or a function of none)
  check: str = ""        # one of _CHECKS' keys: "positive", "non_negative", "seed", ...


def _optimizers():
  from jaxunlearn import train
  return train.OPTIMIZERS


def _schedules():
  from jaxunlearn import train
  return train.SCHEDULES


def _drivers():
  from jaxunlearn import train
  return train.DRIVERS


def _forget_modes():
  from jaxunlearn import splits
  return splits.FORGET_MODES


STOP_RULES = ("epochs", "kl_tol", "calibrated")
REFERENCE_SOURCES = ("remain", "holdout")

# (dotted path, Field) in the order `jaxunlearn config` prints them.
SCHEMA: tuple[tuple[str, Field], ...] = (
    ("setting", Field("custom", "a name for this setting, recorded in the results")),
    ("seed", Field(0, "seeds everything: each stage's key is derived from it by the stage's "
                      "name", check="seed")),
    ("dataset", Field("mnist5k", "mnist5k | mnist | fashion_mnist | cifar10 | svhn_cropped | "
                                 "npz:PATH | idx:DIR | a dataset a plugin registers "
                                 "(jaxunlearn datasets)")),
    ("data_dir", Field("", "tfds data directory ('' = tfds default: $TFDS_DATA_DIR or "
                           "~/tensorflow_datasets)")),
            ("num_classes", Field(0, "classes of the classifier; 0: the dataset's own (npz: the largest "
                             "label + 1, and then every class must occur in training); labels "
                             "outside [0, num_classes) are refused", check="non_negative")),
    ("input_scale", Field(0.0, "divide inputs by this (e.g. 255 for 0..255 images); 0: uint8 "
                               "images are divided by 255 and other images must lie in [0, 1]",
                          check="non_negative")),
    ("model", Field("lenet5", "a registered model: mlp | lenet5 | resnet18 | vgg16 | "
                              "wide_resnet (jaxunlearn models)")),
    ("model_kwargs", Field(None, "the model's own arguments, e.g. hidden=(128,) for the mlp")),
    ("train.epochs", Field(20, "passes over the training set (original, retrain, populations)",
                           check="positive")),
    ("train.batch_size", Field(64, "training batch size (the last partial batch is dropped)",
                               check="positive")),
    ("train.optimizer", Field("adam", "sgd | adam | adamw", choices=_optimizers)),
    ("train.learning_rate", Field(1e-3, "training learning rate", check="positive")),
    ("train.momentum", Field(0.9, "SGD momentum (0: none)", check="non_negative")),
    ("train.weight_decay", Field(0.0, "weight decay", check="non_negative")),
    ("train.schedule", Field("constant", "constant | cosine | step (divide by 10 at 50% and "
                                         "75%)", choices=_schedules)),
    ("train.driver", Field("auto", "auto | scan | loop: how an epoch runs (auto: a host loop on "
                                   "one CPU device, one lax.scan elsewhere)", choices=_drivers)),
    ("forget.mode", Field("random", "random | indices | class", choices=_forget_modes)),
    ("forget.fraction", Field(0.01, "random: the share of the training set to forget",
                              check="open_fraction")),
    ("forget.size", Field(0, "random: this many examples instead of forget.fraction (0: use the "
                             "fraction)", check="non_negative")),
    ("forget.index_file", Field("", "indices: a .npy array or a text file of training indices")),
    ("forget.classes", Field((), "class: the classes whose training examples are forgotten, "
                                 "e.g. (3,)")),
    ("forget.seed", Field(-1, "seeds the random forget set (-1: seed)", check="seed_or_default")),
    ("reference.size", Field(0.1, "|D_s| of the reference model: a fraction < 1 of the training "
                                  "set or a count", check="size")),
    ("reference.epochs", Field(50, "the reference model's training epochs", check="positive")),
    ("reference.reuse", Field(True, "reuse a saved reference whose D_s avoids this request's "
                                    "D_f")),
    ("reference.source", Field("remain", "remain: D_s within D_r (the paper) | holdout: within "
                                         "the held-out split, one D_s for every request",
                               choices=REFERENCE_SOURCES)),
    ("holdout.size", Field(0.0, "training examples no model trains on (a fraction < 1 or a "
                                "count; 0: none): held-out data of D_f's classes for methods "
                                "and the calibrated stop; D_s with reference.source=holdout",
                           check="size_or_zero")),
    ("retrain.enabled", Field(True, "retrain from scratch on D_r (the gold standard and the "
                                    "timing baseline)")),
    ("unlearn.method", Field("lightweight", "a registered unlearning method (jaxunlearn "
                                            "methods)")),
    ("unlearn.lam", Field(0.01, "the paper's lambda in (0, 1]: the KL term's weight "
                                "(lightweight)")),
    ("unlearn.kl_reduction", Field("mean", "mean | sum: the KL term over a forget batch "
                                           "(lightweight; sum is the paper's eq. 1)")),
    ("unlearn.epochs", Field(2, "unlearning epochs: passes over D_f (over D_r for methods whose "
                                "epoch is a pass over D_r)", check="positive")),
    ("unlearn.steps", Field(0, "methods that count their run in steps (epoch_over='steps', e.g. "
                               "importance_retrain): the run's steps, replacing epochs (0: "
                               "epochs passes over D_r); other methods refuse it",
                            check="non_negative")),
    ("unlearn.retrain_fraction", Field(0.0, "methods that count their run in steps: the run's "
                                            "steps are this fraction of retraining's examples "
                                            "(train.epochs over D_r at train.batch_size) at "
                                            "remain_batch_size rows per step, derived from each "
                                            "run's own D_r; replaces steps and epochs (0: unused)",
                                       check="fraction_or_zero")),
    ("unlearn.output_temperature", Field(1.0, "the unlearned model's logits times this (its output "
                                       "layer, the last top-level Dense, scaled at the end), "
                                       "for any method (1: none); a method that scales its "
                                       "output itself (importance_retrain, retrain_short: "
                                       "their temperature) uses its own", check="positive")),
    ("unlearn.stop", Field("epochs", "epochs | kl_tol | calibrated (see jaxunlearn/stop.py)",
                           choices=STOP_RULES)),
    ("unlearn.tol", Field(0.0, "kl_tol: stop once the mean KL to the reference on D_f is below "
                               "this", check="non_negative")),
    ("unlearn.calibrate_every", Field(1, "calibrated: steps between two checks",
                                      check="positive")),
    ("unlearn.forget_batch_size", Field(64, "forget rows per step (clipped to |D_f|)",
                                        check="positive")),
    ("unlearn.remain_batch_size", Field(64, "remain rows per step", check="positive")),
    ("unlearn.optimizer", Field("sgd", "sgd | adam | adamw", choices=_optimizers)),
    ("unlearn.learning_rate", Field(0.01, "unlearning learning rate", check="positive")),
    ("unlearn.momentum", Field(0.0, "SGD momentum (0: none)", check="non_negative")),
    ("unlearn.weight_decay", Field(0.0, "weight decay", check="non_negative")),
    ("unlearn.schedule", Field("constant", "constant | cosine | step", choices=_schedules)),
    ("unlearn.bn_mode", Field("eval", "eval: batch statistics stay the original's, only weights "
                                      "move | train: every forward pass normalises with its "
                                      "batch's statistics and the running ones are updated, as "
                                      "PyTorch references unlearn (models with batch norm)",
                              choices=("eval", "train"))),
        ("eval.batch_size", Field(1000, "batch size of forward passes", check="positive")),
    ("eval.evaluators", Field(("mia", "loss_attack", "distributions"),
                              "evaluators to run (accuracy always runs, backdoor whenever "
                              "backdoor.enabled; jaxunlearn evaluators)")),
    ("plugins", Field((), "modules to import first: your own methods, evaluators, audit "
                          "statistics, datasets, models, transforms")),
    ("parallel.distributed", Field(False, "start multi-process JAX (several hosts, pod slices)")),
    ("parallel.coordinator_address", Field("", "host:port of process 0 ('' : "
                                               "JAX_COORDINATOR_ADDRESS or cluster detection)")),
    ("parallel.num_processes", Field(0, "0: from the environment", check="non_negative")),
    ("parallel.process_id", Field(-1, "-1: from the environment", check="seed_or_default")),
    ("audit.num_models", Field(16, "N per epsilon population (retrain, oracle, none, each "
                                   "method)")),
    ("audit.chunk_size", Field(16, "members per compiled call and per checkpoint",
                               check="positive")),
    ("audit.driver", Field("auto", "vmap: a chunk is one vmapped call | loop: one model at a "
                                   "time | auto: loop for conv nets on one CPU device, else vmap",
                           choices=("auto", "vmap", "loop"))),
    ("audit.methods", Field(("lightweight",), "methods to audit: names or "
                                              "'label=method:field=value,...' overrides of the "
                                              "unlearn block")),
    ("audit.statistics", Field(("epsilon", "ulira"), "audit statistics to compute (jaxunlearn "
                                                     "statistics)")),
        ("audit.protocol", Field("both", "single: every unlearning run starts from the work dir's "
                                     "original (the competition's protocol) | per_seed: run i "
                                     "starts from original i, trained with its own seed | both",
                             choices=("single", "per_seed", "both"))),
    ("audit.seed", Field(-1, "seeds the populations (-1: seed)", check="seed_or_default")),
    ("audit.memory_fraction", Field(0.8, "refuse a population whose estimated memory exceeds "
                                         "this share of the device's (host memory on CPU)",
                                    check="open_fraction_closed")),
            ("report.save_forget_indices", Field(False, "write the forget indices into "
                                                "results.json")),
    ("report.progress", Field(True, "progress bars")),
)

FIELDS: dict[str, Field] = dict(SCHEMA)

# Old spellings of core fields: {old dotted path: new dotted path}.
RENAMED: dict[str, str] = {"audit.plot_examples": "audit.epsilon.plot_examples"}


def base_config() -> ml_collections.ConfigDict:
  """Every core field with its default (no plugin block: see ``plugins.default_config``)."""
  c = ml_collections.ConfigDict()
  for path, field in SCHEMA:
    *parents, leaf = path.split(".")
    node = c
    for p in parents:
      if p not in node:
        node[p] = ml_collections.ConfigDict()
      node = node[p]
    node[leaf] = ml_collections.ConfigDict() if field.default is None else field.default
  return c


_BUILD_ON = ("start get_config() from jaxunlearn.plugins.default_config() and change fields, "
             "as configs/quick.py does")


def check_loaded(value, source: str = "the config file") -> ml_collections.ConfigDict:
  """What a config file's ``get_config()`` returned: a ConfigDict with every core block.

  Raises:
    ConfigError: ``value`` is None, not a ConfigDict, or lacks core blocks or fields
      (:func:`check_core`), naming what and how to build on ``configs/quick.py``.
  """
  if value is None:
    raise ConfigError(f"{source}: get_config() returned None (a missing return?); it must "
                      f"return a ConfigDict: {_BUILD_ON}")
  if not isinstance(value, ml_collections.ConfigDict):
    raise ConfigError(f"{source}: get_config() returned a {type(value).__name__}, not an "
                      f"ml_collections.ConfigDict; {_BUILD_ON}")
  check_core(value, source)
  return value


def check_core(cfg, source: str = "the config") -> None:
  """Raises ConfigError naming the core blocks (and fields) of :data:`SCHEMA` that ``cfg``
  lacks: a config built by hand instead of on ``default_config()``."""
  def has(path: str) -> bool:
    node = cfg
    for part in path.split("."):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        return False
      node = node[part]
    return True

  missing = [path for path, _ in SCHEMA if not has(path)]
  if not missing:
    return
  blocks = sorted({p.split(".")[0] for p in missing if "." in p and not has(p.split(".")[0])})
  fields = [p for p in missing if p.split(".")[0] not in blocks]
  parts = []
  if blocks:
    parts.append(f"the core block{'s' if len(blocks) > 1 else ''} {', '.join(blocks)}")
  if fields:
    shown = ", ".join(fields[:6]) + (f" and {len(fields) - 6} more" if len(fields) > 6 else "")
    parts.append(f"the core field{'s' if len(fields) > 1 else ''} {shown}")
  raise ConfigError(f"{source} lacks {' and '.join(parts)}; {_BUILD_ON}")


def resolve_seed(value: int, cfg) -> int:
  """A seed field where -1 means ``cfg.seed``."""
  return int(value) if value >= 0 else int(cfg.seed)


def resolve_size(size, n: int) -> int:
  """A fraction (< 1) of ``n`` or an absolute count (>= 1)."""
  return int(round(size * n)) if size < 1 else int(size)


def flat_items(cfg, prefix: str = ""):
  """``(dotted path, value)`` of every leaf (``model_kwargs`` is one leaf)."""
  for k, v in cfg.items():
    name = f"{prefix}{k}"
    if isinstance(v, ml_collections.ConfigDict) and k != "model_kwargs":
      yield from flat_items(v, name + ".")
    else:
      yield name, v


def _is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


_CHECKS = {
    "positive": (lambda v: v > 0, "must be > 0"),
    "non_negative": (lambda v: v >= 0, "must be >= 0"),
    "seed": (lambda v: v >= 0, "must be >= 0"),
    "seed_or_default": (lambda v: v >= -1, "must be >= 0 (or -1 for the default)"),
    "open_fraction": (lambda v: 0 < v < 1, "must be in (0, 1)"),
    "open_fraction_closed": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "fraction_or_zero": (lambda v: 0 <= v <= 1, "must be in (0, 1] (0: unused)"),
    "size": (lambda v: v > 0 and (v < 1 or v == int(v)),
             "must be a fraction < 1 or a whole count, e.g. 0.1 or 400"),
    "size_or_zero": (lambda v: v == 0 or (v > 0 and (v < 1 or v == int(v))),
                     "must be 0, a fraction < 1 or a whole count, e.g. 0.05 or 200"),
}


def check_value(name: str, value, default, *, where: str = "config field") -> None:
  """Raises ConfigError unless ``value`` has the type of ``default`` (and is finite)."""
  if isinstance(default, bool):
    ok, kind = isinstance(value, bool), "True or False"
  elif isinstance(default, int):
    ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
  elif isinstance(default, float):
    ok, kind = _is_number(value), "a number"
  elif isinstance(default, str):
    ok, kind = isinstance(value, str), "a string"
  elif isinstance(default, (tuple, list)):
    ok, kind = isinstance(value, (tuple, list)), "a tuple, e.g. ('a', 'b')"
  else:
    ok, kind = True, ""
  if not ok:
    raise ConfigError(f"{where} '{name}' must be {kind}, got {value!r} "
                      f"({type(value).__name__})")
  if isinstance(value, float) and not math.isfinite(value):
    raise ConfigError(f"{where} '{name}' must be a finite number, got {value}")


def check_field(name: str, value, field: Field, *, where: str = "config field") -> None:
  """The type, choices and range checks of one schema field."""
  if field.default is not None:
    check_value(name, value, field.default, where=where)
  choices = field.choices() if callable(field.choices) else field.choices
  if choices is not None and value not in choices:
    raise ConfigError(f"{where} '{name}' must be one of {tuple(choices)}, got {value!r}")
  if field.check:
    ok, text = _CHECKS[field.check]
    if not ok(value):
      raise ConfigError(f"{where} '{name}' {text}, got {value!r}")


UNLEARN_FIELDS = {path.split(".", 1)[1]: f for path, f in SCHEMA if path.startswith("unlearn.")}


def check_unlearn_block(u, where: str = "") -> None:
  """Checks the core fields of an ``unlearn`` block.

  ``run`` checks its own block with it (``where=""``: fields are named
  ``unlearn.<field>``); ``jaxunlearn audit`` checks every ``audit.methods``
  entry with it (``where="audit.methods entry '...'"``), so both refuse the
  same values.
  """
  for name, field in UNLEARN_FIELDS.items():
    if name in u:
      if where:
        check_field(name, u[name], field, where=f"{where}: field")
      else:
        check_field(f"unlearn.{name}", u[name], field)
  if u.stop == "kl_tol" and not u.tol > 0:
    prefix = f"{where}: " if where else ""
    raise ConfigError(f"{prefix}stop='kl_tol' needs a tolerance: set tol > 0 (e.g. "
                      "--config.unlearn.tol=0.01)")


def check_schema(cfg: ml_collections.ConfigDict,
                 defaults: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
  """Checks ``cfg`` against ``defaults`` (default: :func:`base_config`) and the schema.

  Plugin blocks are typed by their defaults in ``defaults``
  (``plugins.default_config()``); their own rules are the plugins' to check.

  Returns:
    ``cfg``.

  Raises:
    ConfigError: naming the first bad field and how to fix it.
  """
  check_core(cfg)
  known = dict(flat_items(defaults if defaults is not None else base_config()))
  for name, value in flat_items(cfg):
    if name not in known:
      top = sorted((defaults if defaults is not None else base_config()).keys())
      raise ConfigError(f"unknown config field '{name}'; `jaxunlearn config --config FILE` "
                        f"lists every field (top-level: {', '.join(top)})")
    if name in FIELDS:
      check_field(name, value, FIELDS[name])
    else:
      check_value(name, value, known[name])
  if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0
             for c in cfg.forget.classes):
    raise ConfigError(f"config field 'forget.classes' must hold class ids (integers >= 0), "
                      f"got {tuple(cfg.forget.classes)!r}; e.g. --config.forget.classes='(3,)'")
  check_unlearn_block(cfg.unlearn)
  if cfg.forget.index_file and cfg.forget.mode != "indices":
    raise ConfigError(f"forget.index_file is set but forget.mode is {cfg.forget.mode!r}, which "
                      "ignores it; set --config.forget.mode=indices (or drop the file)")
  flip = cfg.get("label_flip")
  if flip is not None and flip.get("index_file") and not flip.get("enabled"):
    raise ConfigError("label_flip.index_file is set but label_flip.enabled is False, which "
                      "ignores it; set --config.label_flip.enabled=True (or drop the file)")
  if cfg.unlearn.stop == "calibrated" and not cfg.holdout.size:
    raise ConfigError("unlearn.stop='calibrated' compares D_f with held-out examples of its "
                      "classes: set --config.holdout.size (e.g. 0.05)")
  if cfg.audit.num_models < 2:
    raise ConfigError(f"config field 'audit.num_models' must be >= 2, got "
                      f"{cfg.audit.num_models}")
  if not isinstance(cfg.get("plugins", ()), (tuple, list)):
    raise ConfigError(f"config.plugins must be a tuple of module names, got {cfg.plugins!r}")
  return cfg


def mutable_copy(cfg) -> ml_collections.ConfigDict:
  """A ``ConfigDict`` copy of ``cfg`` (frozen or not) that changes nothing of the caller's."""
  if isinstance(cfg, ml_collections.FrozenConfigDict):
    return ml_collections.ConfigDict(cfg.to_dict())
  return copy.deepcopy(cfg)


def describe(cfg, docs: dict[str, str] | None = None) -> list[tuple[str, Any, str]]:
  """``(dotted path, value, description)`` of every field of ``cfg``.

  Args:
    docs: descriptions of plugin fields (``plugins.field_docs()``); core
      fields are described by :data:`SCHEMA`.
  """
  docs = docs or {}
  out = []
  for name, value in flat_items(cfg):
    doc = FIELDS[name].doc if name in FIELDS else docs.get(name, "")
    if isinstance(value, ml_collections.ConfigDict):
      value = value.to_dict()
    out.append((name, value, doc))
  return out


__getattr__ = deprecation.module_getattr(__name__, {
    "validate": "jaxunlearn.config.check_schema",
})
