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

  c.retrain = ml_collections.ConfigDict()
  c.retrain.enabled = True

  c.unlearn = ml_collections.ConfigDict()
  c.unlearn.method = "lightweight"  # lightweight | finetune
  c.unlearn.lam = 0.01
  c.unlearn.epochs = 2
  c.unlearn.tol = 0.0            # > 0: stop once mean KL on D_f < tol
  c.unlearn.forget_batch_size = 64
  c.unlearn.remain_batch_size = 64
  c.unlearn.optimizer = "sgd"
  c.unlearn.learning_rate = 0.01
  c.unlearn.momentum = 0.0
  c.unlearn.weight_decay = 0.0
  c.unlearn.schedule = "constant"

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 1000
  # Evaluators run after training (jaxunlearn.evaluate); "backdoor" is added
  # whenever backdoor.enabled.
  c.eval.evaluators = ("mia", "distributions")

  # Shadow-model membership inference (jaxunlearn.mia).
  c.mia = ml_collections.ConfigDict()
  c.mia.num_shadows = 8
  c.mia.shadow_epochs = 0        # 0: train.epochs
  c.mia.pool_size = 0.5          # shadow pool from the test split: < 1 fraction, >= 1 count
  c.mia.features = ("sorted", "logit_conf")  # sorted | unsorted | logit_conf; first unprefixed
  c.mia.shadow_driver = "auto"   # auto | scan | loop (auto: loop on CPU)
  c.mia.loss_attack_folds = 5
  c.mia.seed = -1                # -1: use config.seed

  # A backdoor planted in D_f (jaxunlearn.backdoor).
  c.backdoor = ml_collections.ConfigDict()
  c.backdoor.enabled = False
  c.backdoor.target_class = 0
  c.backdoor.patch_size = 3
  c.backdoor.patch_value = 1.0
  c.backdoor.position = "bottom_right"  # bottom_right | bottom_left | top_right | top_left | center
  c.backdoor.margin = 1          # pixels between the patch and the image edges

  # Multi-process runs (several hosts, pod slices); see docs/scaling.md.
  # Empty fields fall back to JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
  # JAX_PROCESS_ID, then to JAX's cluster detection.
  c.parallel = ml_collections.ConfigDict()
  c.parallel.distributed = False
  c.parallel.coordinator_address = ""  # "host:port" of process 0
  c.parallel.num_processes = 0         # 0: from the environment
  c.parallel.process_id = -1           # -1: from the environment

  c.report = ml_collections.ConfigDict()
  c.report.save_forget_indices = False
  c.report.progress = True
  return c


_POSITIVE_INTS = ("train.epochs", "train.batch_size", "reference.epochs", "unlearn.epochs",
                  "unlearn.forget_batch_size", "unlearn.remain_batch_size", "eval.batch_size",
                  "mia.num_shadows", "backdoor.patch_size")
_NON_NEGATIVE = ("train.learning_rate", "train.momentum", "train.weight_decay",
                 "unlearn.learning_rate", "unlearn.momentum", "unlearn.weight_decay",
                 "unlearn.tol", "forget.size", "mia.shadow_epochs", "backdoor.target_class",
                 "backdoor.margin", "parallel.num_processes")
_CHOICES = {
    "train.optimizer": ("sgd", "adam", "adamw"),
    "unlearn.optimizer": ("sgd", "adam", "adamw"),
    "train.schedule": ("constant", "cosine", "step"),
    "unlearn.schedule": ("constant", "cosine", "step"),
    "train.driver": ("auto", "scan", "loop"),
    "forget.mode": ("random", "indices", "class"),
    "mia.shadow_driver": ("auto", "scan", "loop"),
    "backdoor.position": ("bottom_right", "bottom_left", "top_right", "top_left", "center"),
}
MIA_FEATURES = ("sorted", "unsorted", "logit_conf")


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
  """Checks ``cfg`` against :func:`base_config`; returns it unchanged.

  Raises:
    ConfigError: naming the first bad field and how to fix it.
  """
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
  for name, choices in _CHOICES.items():
    if _get(cfg, name) not in choices:
      raise ConfigError(f"config field '{name}' must be one of {choices}, got {_get(cfg, name)!r}")
  if cfg.parallel.process_id < -1:
    raise ConfigError(f"parallel.process_id must be >= 0 (-1: from the environment), "
                      f"got {cfg.parallel.process_id}")
  if not 0.0 < cfg.unlearn.lam <= 1.0:
    raise ConfigError(f"unlearn.lam must be in (0, 1], got {cfg.unlearn.lam}; "
                      "e.g. --config.unlearn.lam=0.01")
  if not 0.0 < cfg.forget.fraction < 1.0:
    raise ConfigError(f"forget.fraction must be in (0, 1), got {cfg.forget.fraction}")
  if cfg.reference.size <= 0:
    raise ConfigError(f"reference.size must be > 0 (a fraction < 1 or a count), got {cfg.reference.size}")
  if cfg.reference.size >= 1 and cfg.reference.size != int(cfg.reference.size):
    raise ConfigError(f"reference.size {cfg.reference.size} is neither a fraction < 1 nor a "
                      "whole count; e.g. 0.1 or 400")
  if cfg.train.learning_rate == 0 or cfg.unlearn.learning_rate == 0:
    raise ConfigError("learning rates must be > 0")
  _validate_evaluators(cfg)
  return cfg


def _validate_evaluators(cfg) -> None:
  from jaxunlearn import evaluate
  for name in cfg.eval.evaluators:
    evaluate.get_evaluator(name)
  if "backdoor" in cfg.eval.evaluators and not cfg.backdoor.enabled:
    raise ConfigError("eval.evaluators lists 'backdoor' but backdoor.enabled is False; "
                      "set --config.backdoor.enabled=True or drop it")
  if "mia" in cfg.eval.evaluators:
    if not cfg.mia.features:
      raise ConfigError(f"mia.features is empty; use some of {MIA_FEATURES}")
    for f in cfg.mia.features:
      if f not in MIA_FEATURES:
        raise ConfigError(f"mia.features has unknown feature set {f!r}; use some of "
                          f"{MIA_FEATURES}")
    if cfg.mia.pool_size <= 0:
      raise ConfigError(f"mia.pool_size must be > 0 (a fraction < 1 of the test split or a "
                        f"count), got {cfg.mia.pool_size}")
    if cfg.mia.loss_attack_folds < 2:
      raise ConfigError(f"mia.loss_attack_folds must be >= 2, got {cfg.mia.loss_attack_folds}")
  if cfg.backdoor.enabled and not 0.0 <= cfg.backdoor.patch_value <= 1.0:
    raise ConfigError(f"backdoor.patch_value must be in [0, 1] (inputs are scaled to [0, 1]), "
                      f"got {cfg.backdoor.patch_value}")


def resolve_size(size, n: int) -> int:
  """A fraction (< 1) of ``n`` or an absolute count (>= 1)."""
  return int(round(size * n)) if size < 1 else int(size)
