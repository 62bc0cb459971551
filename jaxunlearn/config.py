"""The full default config and its validation.

Config files in ``configs/`` start from :func:`base_config` and override a
few fields. :func:`validate` rejects unknown keys, wrong types and values out
of range with a :class:`ConfigError` that names the field.
"""

from __future__ import annotations

import math

import ml_collections

from jaxunlearn.errors import ConfigError


def base_config() -> ml_collections.ConfigDict:
  """Every field the pipeline reads, with defaults (LeNet-5 on mnist5k)."""
  c = ml_collections.ConfigDict()
  c.setting = "custom"
  c.seed = 0
  c.dataset = "mnist5k"          # mnist5k | mnist | fashion_mnist | cifar10 | svhn_cropped | npz:PATH
  c.data_dir = ""                # tfds data_dir ("" = tfds default)
  c.model = "lenet5"             # mlp | lenet5 | resnet18 | vgg16 | wide_resnet
  c.model_kwargs = ml_collections.ConfigDict()

  c.train = ml_collections.ConfigDict()
  c.train.epochs = 20
  c.train.batch_size = 64
  c.train.optimizer = "adam"     # sgd | adam | adamw
  c.train.learning_rate = 1e-3
  c.train.momentum = 0.9
  c.train.weight_decay = 0.0
  c.train.schedule = "constant"  # constant | cosine | step
  c.train.driver = "auto"        # auto | scan | loop

  c.forget = ml_collections.ConfigDict()
  c.forget.mode = "random"       # random | indices | class
  c.forget.fraction = 0.01
  c.forget.size = 0              # > 0 overrides fraction
  c.forget.index_file = ""
  c.forget.classes = ()
  c.forget.seed = -1             # -1: use config.seed

  c.reference = ml_collections.ConfigDict()
  c.reference.size = 0.1         # < 1: fraction of the training set; >= 1: count
  c.reference.epochs = 50
  c.reference.reuse = True
  c.reference.source = "remain"  # remain: D_s within D_r (the paper) | holdout: within the held-out split

  # Training examples kept out of every model's training, drawn with `seed`
  # alone (so every request of a work dir shares them): held-out examples of
  # D_f's classes for methods and the calibrated stop; D_s with
  # reference.source=holdout.
  c.holdout = ml_collections.ConfigDict()
  c.holdout.size = 0.0           # < 1: fraction of the training set; >= 1: count; 0: none

  c.retrain = ml_collections.ConfigDict()
  c.retrain.enabled = True

  c.unlearn = ml_collections.ConfigDict()
  c.unlearn.method = "lightweight"  # any of jaxunlearn.methods.names()
  c.unlearn.lam = 0.01           # the paper's lambda (lightweight)
  c.unlearn.kl_reduction = "mean"  # mean | sum: the KL term over a forget batch (lightweight)
  c.unlearn.epochs = 2
  c.unlearn.stop = "epochs"      # epochs | kl_tol | calibrated (see jaxunlearn/unlearn.py)
  c.unlearn.tol = 0.0            # kl_tol: stop once mean KL on D_f < tol (methods with a reference)
  c.unlearn.calibrate_every = 1  # calibrated: check every this many steps
  c.unlearn.forget_batch_size = 64
  c.unlearn.remain_batch_size = 64
  c.unlearn.optimizer = "sgd"
  c.unlearn.learning_rate = 0.01
  c.unlearn.momentum = 0.0
  c.unlearn.weight_decay = 0.0
  c.unlearn.schedule = "constant"
  # Each method's own hyperparameters: unlearn.<method name>.<hparam> (added below).

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 1000
  # Evaluators run after training (jaxunlearn.evaluators); "accuracy" always
  # runs, "backdoor" whenever backdoor.enabled. Each owns a top-level block.
  c.eval.evaluators = ("mia", "loss_attack", "distributions")

  # Modules imported before the config is validated: a user's own methods,
  # evaluators and transforms register themselves there.
  c.plugins = ()

  # Multi-process runs (several hosts, pod slices); see docs/scaling.md.
  # Empty fields fall back to JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
  # JAX_PROCESS_ID, then to JAX's cluster detection.
  c.parallel = ml_collections.ConfigDict()
  c.parallel.distributed = False
  c.parallel.coordinator_address = ""  # "host:port" of process 0
  c.parallel.num_processes = 0         # 0: from the environment
  c.parallel.process_id = -1           # -1: from the environment

  # Label flip of D_f (jaxunlearn.transforms): y -> (y + 1 + r) mod C, r drawn
  # per example in [0, C - 2], so the original must memorise D_f to fit it.
  c.label_flip = ml_collections.ConfigDict()
  c.label_flip.enabled = False
  c.label_flip.seed = -1         # -1: use config.seed

  # `jaxunlearn audit` (jaxunlearn.auditor): populations of models, the
  # epsilon-score and U-LiRA. Methods are names or "label=name:field=value,..."
  # overrides of the unlearn block, e.g. "paper=lightweight:lam=0.01,epochs=2".
  c.audit = ml_collections.ConfigDict()
  c.audit.num_models = 16        # N per epsilon population (retrain, oracle, none, each method)
  c.audit.chunk_size = 16        # members per compiled call and per checkpoint
  c.audit.methods = ("lightweight",)
  c.audit.seed = -1              # -1: use config.seed
  c.audit.plot_examples = 4      # forget examples in the phi-histogram plot
  c.audit.ulira = ml_collections.ConfigDict()
  c.audit.ulira.num_originals = 8            # M originals on random keep-masks of D_f (0: no U-LiRA)
  c.audit.ulira.forget_sets_per_original = 2  # K forget sets (unlearning runs) per original
  c.audit.ulira.keep_fraction = 0.5          # share of the pool each original trains on
  c.audit.ulira.forget_fraction = 0.5        # share of an original's kept pool it then forgets

  c.report = ml_collections.ConfigDict()
  c.report.save_forget_indices = False
  c.report.progress = True
  add_plugin_blocks(c)
  return c


def add_plugin_blocks(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Adds the config block of every registered evaluator and method that ``c`` lacks.

  Evaluators own a top-level block (``c.mia``, ``c.backdoor``, ...); methods
  own ``c.unlearn.<name>`` with their hyperparameters (those not shared with
  ``c.unlearn`` itself, like ``lam``).
  """
  from jaxunlearn import evaluators, methods
  with c.unlocked():
    for name in evaluators.names():
      block = evaluators.get(name)().config()
      if block is not None and name not in c:
        c[name] = block
    for name in methods.names():
      method = methods.get(name)
      own = {h: float(v) for h, v in method.hparams.items() if h not in method.shared_hparams}
      own.update({o: v[0] for o, v in method.options.items() if o not in method.shared_hparams})
      if own and name not in c.unlearn:
        c.unlearn[name] = ml_collections.ConfigDict(own)
  return c


def load_plugins(modules) -> None:
  """Imports each module named in ``config.plugins`` (they register methods, evaluators, ...)."""
  import importlib
  if isinstance(modules, str):
    modules = (modules,)
  for name in modules:
    if not isinstance(name, str) or not name:
      raise ConfigError(f"config.plugins must hold module names, got {name!r}; "
                        "e.g. --config.plugins='(\"my_methods\",)'")
    try:
      importlib.import_module(name)
    except Exception as e:  # pylint: disable=broad-except
      # A plugin is user code: it may be missing or fail on import.
      raise ConfigError(f"cannot import plugin module {name!r} ({type(e).__name__}: {e}); "
                        "put it on PYTHONPATH or fix it") from None


_POSITIVE_INTS = ("train.epochs", "train.batch_size", "reference.epochs", "unlearn.epochs",
                  "unlearn.forget_batch_size", "unlearn.remain_batch_size", "eval.batch_size",
                  "unlearn.calibrate_every")
STOP_RULES = ("epochs", "kl_tol", "calibrated")
_NON_NEGATIVE = ("train.learning_rate", "train.momentum", "train.weight_decay",
                 "unlearn.learning_rate", "unlearn.momentum", "unlearn.weight_decay",
                 "unlearn.tol", "forget.size", "parallel.num_processes")


def _choices() -> dict:
  from jaxunlearn import splits, train
  return {
      "train.optimizer": train.OPTIMIZERS,
      "unlearn.optimizer": train.OPTIMIZERS,
      "train.schedule": train.SCHEDULES,
      "unlearn.schedule": train.SCHEDULES,
      "train.driver": train.DRIVERS,
      "forget.mode": splits.FORGET_MODES,
      "reference.source": ("remain", "holdout"),
      "unlearn.stop": STOP_RULES,
  }


def _get(cfg, dotted):
  for part in dotted.split("."):
    cfg = cfg[part]
  return cfg


def _flat_keys(cfg, prefix=""):
  for k, v in cfg.items():
    name = f"{prefix}{k}"
    if isinstance(v, ml_collections.ConfigDict) and k != "model_kwargs":
      yield from _flat_keys(v, name + ".")
    else:
      yield name, v


def validate(cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Imports ``cfg.plugins``, then checks ``cfg`` against :func:`base_config`.

  Blocks of plugins registered after ``cfg`` was made are added to it.
  Evaluators check their own blocks later, with the data's sizes
  (:meth:`jaxunlearn.evaluators.Evaluator.validate`).

  Returns:
    ``cfg``.

  Raises:
    ConfigError: naming the first bad field and how to fix it.
  """
  from jaxunlearn import evaluators, methods
  if not isinstance(cfg.get("plugins", ()), (tuple, list, str)):
    raise ConfigError(f"config.plugins must be a tuple of module names, got {cfg.plugins!r}")
  load_plugins(cfg.get("plugins", ()))
  if not isinstance(cfg, ml_collections.FrozenConfigDict):
    add_plugin_blocks(cfg)
  base = dict(_flat_keys(base_config()))
  for name, value in _flat_keys(cfg):
    if name not in base:
      raise ConfigError(f"unknown config field '{name}'; valid top-level fields: "
                        f"{', '.join(sorted(base_config().keys()))}")
    default = base[name]
    if isinstance(default, bool):
      ok = isinstance(value, bool)
    elif isinstance(default, int):
      ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
      ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, str):
      ok = isinstance(value, str)
    elif isinstance(default, (tuple, list)):
      ok = isinstance(value, (tuple, list))
    else:
      ok = True
    if not ok:
      raise ConfigError(f"config field '{name}' must be {type(default).__name__}, "
                        f"got {value!r} ({type(value).__name__})")
  for name, value in _flat_keys(cfg):
    if isinstance(value, float) and not math.isfinite(value):
      raise ConfigError(f"config field '{name}' must be a finite number, got {value}")
  if cfg.seed < 0:
    raise ConfigError(f"config field 'seed' must be >= 0, got {cfg.seed}")
  if cfg.forget.seed < -1:
    raise ConfigError(f"config field 'forget.seed' must be >= 0 (or -1 to use 'seed'), "
                      f"got {cfg.forget.seed}")
  if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0
             for c in cfg.forget.classes):
    raise ConfigError(f"config field 'forget.classes' must hold class ids (integers >= 0), "
                      f"got {tuple(cfg.forget.classes)!r}; e.g. --config.forget.classes='(3,)'")
  for name in _POSITIVE_INTS:
    if _get(cfg, name) < 1:
      raise ConfigError(f"config field '{name}' must be a positive integer, got {_get(cfg, name)}")
  for name in _NON_NEGATIVE:
    if _get(cfg, name) < 0:
      raise ConfigError(f"config field '{name}' must be >= 0, got {_get(cfg, name)}")
  for name, choices in _choices().items():
    if _get(cfg, name) not in choices:
      raise ConfigError(f"config field '{name}' must be one of {choices}, got {_get(cfg, name)!r}")
  if cfg.parallel.process_id < -1:
    raise ConfigError(f"parallel.process_id must be >= 0 (-1: from the environment), "
                      f"got {cfg.parallel.process_id}")
  if not 0.0 < cfg.forget.fraction < 1.0:
    raise ConfigError(f"forget.fraction must be in (0, 1), got {cfg.forget.fraction}")
  if cfg.holdout.size < 0 or (cfg.holdout.size >= 1 and cfg.holdout.size != int(cfg.holdout.size)):
    raise ConfigError(f"holdout.size must be 0, a fraction < 1 or a whole count, got "
                      f"{cfg.holdout.size}")
  if cfg.reference.size <= 0:
    raise ConfigError(f"reference.size must be > 0 (a fraction < 1 or a count), got {cfg.reference.size}")
  if cfg.reference.size >= 1 and cfg.reference.size != int(cfg.reference.size):
    raise ConfigError(f"reference.size {cfg.reference.size} is neither a fraction < 1 nor a "
                      "whole count; e.g. 0.1 or 400")
  if cfg.unlearn.stop == "kl_tol" and not cfg.unlearn.tol > 0:
    raise ConfigError("unlearn.stop='kl_tol' needs a tolerance: set --config.unlearn.tol (> 0)")
  if cfg.unlearn.stop == "calibrated" and not cfg.holdout.size:
    raise ConfigError("unlearn.stop='calibrated' compares D_f with held-out examples of its "
                      "classes: set --config.holdout.size (e.g. 0.05)")
  if cfg.audit.num_models < 2 or cfg.audit.chunk_size < 1:
    raise ConfigError(f"audit.num_models must be >= 2 and audit.chunk_size >= 1, got "
                      f"{cfg.audit.num_models} and {cfg.audit.chunk_size}")
  u = cfg.audit.ulira
  if u.num_originals < 0 or u.forget_sets_per_original < 1:
    raise ConfigError(f"audit.ulira.num_originals must be >= 0 and forget_sets_per_original "
                      f">= 1, got {u.num_originals} and {u.forget_sets_per_original}")
  if not (0 < u.keep_fraction < 1 and 0 < u.forget_fraction <= 1):
    raise ConfigError(f"audit.ulira.keep_fraction must be in (0, 1) and forget_fraction in "
                      f"(0, 1], got {u.keep_fraction} and {u.forget_fraction}")
  if cfg.train.learning_rate == 0 or cfg.unlearn.learning_rate == 0:
    raise ConfigError("learning rates must be > 0")
  methods.resolve_hparams(cfg.unlearn.method, cfg.unlearn)   # the method and its hyperparameters
  methods.resolve_method(cfg.unlearn.method, cfg.unlearn)    # ... and its options
  evaluators.selected(cfg)                                   # every listed evaluator exists
  return cfg


def resolve_size(size, n: int) -> int:
  """A fraction (< 1) of ``n`` or an absolute count (>= 1)."""
  return int(round(size * n)) if size < 1 else int(size)
