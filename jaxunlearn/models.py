"""Image classifiers (Flax linen) and a registry to build them by name.

Every model is a :class:`flax.linen.Module` with the signature
``__call__(self, x, train: bool = False) -> logits``, where ``x`` is a batch
``(N, H, W, C)`` (the MLP accepts any ``(N, ...)``) and ``logits`` is float32
``(N, num_classes)``.

Batch-norm models (``resnet18``, ``vgg16``, ``wide_resnet``) keep running
statistics in the ``'batch_stats'`` collection. With ``train=True`` they
normalise with the batch's statistics and update the running ones, so they
must be applied with ``mutable=['batch_stats']``; with ``train=False`` they use
the running statistics and need no mutable collection. Use
:func:`has_batch_norm` to know which case applies.

No model has dropout or any other randomness in ``__call__``: the same
parameters and inputs always give the same logits, which unlearning
comparisons rely on.

The ``dtype`` field is the computation dtype. Parameters are always float32
(``param_dtype``), so ``dtype=jnp.bfloat16`` gives mixed precision; the
logits are cast back to float32 so the loss is computed in float32.

Example::

  model = get_model("resnet18", num_classes=10)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  logits, updates = model.apply(variables, x, train=True,
                                mutable=["batch_stats"])
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Sequence, Union

import flax.linen as nn
import jax.numpy as jnp

from jaxunlearn.errors import ConfigError, DataError
from jaxunlearn.registry import Registry, guard

__all__ = [
    "MODELS",
    "register",
    "names",
    "init_params_fn",
    "get_model",
    "has_batch_norm",
    "init_variables",
    "MLP",
    "LeNet5",
    "ResNet",
    "VGG",
    "WideResNet",
    "VGG16_CFG",
]

ModelFactory = Callable[..., nn.Module]

# Name -> factory called as ``factory(num_classes=..., **kwargs)``. A factory
# is usually a Module class; its class attribute ``uses_batch_norm`` tells
# :func:`has_batch_norm` whether the model has a ``'batch_stats'`` collection.
_REGISTRY = Registry("model", None, "model")
MODELS: dict[str, ModelFactory] = _REGISTRY._plugins   # read-only view by convention

# Fields every linen Module has that are not model hyperparameters.
_LINEN_FIELDS = frozenset({"parent", "name"})

# PyTorch's BatchNorm defaults (momentum 0.1 there is 0.9 here), so that
# hyperparameters and results carry over from the PyTorch literature.
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5

# Kaiming-normal (fan_out) as torchvision initialises the convs of its
# ResNets and VGGs; flax's default LeCun init trains deep ReLU nets slower.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def register(name: str, *, replace: bool = False) -> Callable[[ModelFactory], ModelFactory]:
  """Decorator that registers a model factory under ``name``.

  Args:
    name: the name :func:`get_model` looks the factory up by.
    replace: replace a different factory already registered as ``name``.

  Raises:
    ConfigError: ``name`` is already taken by another factory (and not ``replace``).
  """
  return _REGISTRY.register(name, replace=replace)


def names() -> list[str]:
  """The registered model names, sorted."""
  return _REGISTRY.names()


def implementation(name: str) -> dict | None:
  """None for the package's own model ``name``, else what tells the registered factory from
  any other (part of the original's fingerprint; internal)."""
  return _REGISTRY.implementation(name)


def _lookup(name: str) -> ModelFactory:
  return _REGISTRY.get(name)


def has_batch_norm(name: str) -> bool:
  """Whether the model registered as ``name`` has batch norm.

  If so, its variables hold a ``'batch_stats'`` collection and training
  applies it with ``mutable=['batch_stats']``.

  Raises:
    ConfigError: ``name`` is not registered.
  """
  return bool(getattr(_lookup(name), "uses_batch_norm", False))


def _hyperparameters(factory: ModelFactory) -> set[str] | None:
  """The keyword arguments a Module-class factory accepts, else None."""
  if isinstance(factory, type) and dataclasses.is_dataclass(factory):
    return {f.name for f in dataclasses.fields(factory)
            if f.init and f.name not in _LINEN_FIELDS}
  return None


def _normalise_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
  """Turns config-file values (lists, dtype names) into what modules want."""
  out = {}
  for key, value in kwargs.items():
    if isinstance(value, list):
      # Module fields are hashed and compared; lists are neither reliably.
      value = tuple(value)
    if key == "dtype" and isinstance(value, str):
      try:
        value = jnp.dtype(value)
      except TypeError:
        raise ConfigError(
            f"dtype {value!r} is not a dtype name; use e.g. 'float32' or "
            "'bfloat16'") from None
    out[key] = value
  return out


def get_model(name: str, /, num_classes: int, **kwargs) -> nn.Module:
  """Builds the model registered as ``name``.

  Args:
    name: a key of :data:`MODELS` (``mlp``, ``lenet5``, ``resnet18``,
      ``vgg16``, ``wide_resnet``).
    num_classes: number of output logits.
    **kwargs: hyperparameters of the model (its dataclass fields), e.g.
      ``depth=28, width=10`` for ``wide_resnet`` or ``dtype='bfloat16'``.
      Lists are converted to tuples and dtype names to dtypes, so values can
      come straight from a config file.

  Returns:
    An unbound linen Module; call ``init`` / ``apply`` on it.

  Raises:
    ConfigError: unknown ``name``, unknown keyword or invalid value.
  """
  factory = _lookup(name)
  accepted = _hyperparameters(factory)
  if accepted is not None:
    unknown = sorted(set(kwargs) - accepted)
    if "num_classes" in kwargs:
      unknown.append("num_classes")
    if unknown:
      options = ", ".join(sorted(accepted - {"num_classes"})) or "none"
      raise ConfigError(
          f"model {name!r} got unknown argument(s) {', '.join(unknown)}; "
          f"its arguments are: {options}")
  kwargs = _normalise_kwargs(kwargs)
  with guard("model", name, factory, "construction"):
    try:
      return factory(num_classes=num_classes, **kwargs)
    except TypeError as e:  # A plain-function factory with a wrong keyword.
      raise ConfigError(f"model {name!r} rejected its arguments: {e}; check "
                        "the model's keyword arguments") from None


def init_variables(model: nn.Module, key, input_shape) -> tuple[Any, Any]:
  """``(params, batch_stats)`` of a freshly initialised ``model`` for inputs of ``input_shape``.

  ``batch_stats`` is ``{}`` for models without batch norm.
  """
  variables = model.init(key, jnp.zeros((1, *input_shape), jnp.float32), train=False)
  return variables["params"], variables.get("batch_stats", {})


def init_params_fn(model: nn.Module, input_shape) -> Callable:
  """``init(key) -> params`` of a freshly initialised ``model`` (e.g. a random teacher)."""
  return lambda key: init_variables(model, key, input_shape)[0]


# --- validation shared by the modules -----------------------------------------


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _check_positive_int(model: str, field: str, value) -> None:
  if not _is_int(value) or value < 1:
    raise ConfigError(
        f"{model} {field} must be a positive integer, got {value!r}; "
        f"set {field} to e.g. 10")


def _check_common(module: nn.Module) -> None:
  """Checks the fields every model here has: num_classes and dtype."""
  model = type(module).__name__
  _check_positive_int(model, "num_classes", module.num_classes)
  try:
    dtype = jnp.dtype(module.dtype)
  except TypeError:
    dtype = None
  if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
    raise ConfigError(
        f"{model} dtype must be a floating dtype, got {module.dtype!r}; use "
        "jnp.float32 or jnp.bfloat16")


def _check_images(model: str, x) -> None:
  if x.ndim != 4:
    raise DataError(
        f"{model} expects images of shape (N, H, W, C), got shape {x.shape}; "
        "add the channel axis, e.g. x[..., None] for grayscale")


def _finish(logits) -> jnp.ndarray:
  # The loss and softmax are computed in float32 even in bf16 mixed precision.
  return logits.astype(jnp.float32)


# --- MLP ----------------------------------------------------------------------


@register("mlp")
class MLP(nn.Module):
  """Multilayer perceptron on flattened inputs.

  Attributes:
    num_classes: number of logits.
    hidden: widths of the ReLU hidden layers. The default (512, 256) has
      535,818 parameters for 28x28 inputs and 10 classes.
    dtype: computation dtype (parameters stay float32).
  """

  uses_batch_norm: ClassVar[bool] = False

  num_classes: int
  hidden: Sequence[int] = (512, 256)
  dtype: Any = jnp.float32

  def __post_init__(self):
    _check_common(self)
    if isinstance(self.hidden, (str, bytes)) or not all(
        _is_int(h) and h > 0 for h in self.hidden):
      raise ConfigError(
          f"MLP hidden must be a sequence of positive integers, got "
          f"{self.hidden!r}; use e.g. hidden=(512, 256)")
    super().__post_init__()

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # No batch norm or dropout; kept for a uniform signature.
    if x.ndim < 2:
      raise DataError(
          f"MLP expects a batch of shape (N, ...), got shape {x.shape}; add "
          "the batch axis, e.g. x[None]")
    x = jnp.asarray(x, self.dtype).reshape((x.shape[0], -1))
    for width in self.hidden:
      x = nn.relu(nn.Dense(width, dtype=self.dtype)(x))
    return _finish(nn.Dense(self.num_classes, dtype=self.dtype)(x))


# --- LeNet-5 ------------------------------------------------------------------


@register("lenet5")
class LeNet5(nn.Module):
  """LeNet-5 (ReLU, max pooling); 61,706 parameters on 28x28x1 with 10 classes.

  The first conv uses SAME padding so 28x28 inputs reach the classic 5x5x16
  feature map; 32x32x3 inputs work too (6x6x16, more Dense parameters).

  Attributes:
    num_classes: number of logits.
    dtype: computation dtype (parameters stay float32).
  """

  uses_batch_norm: ClassVar[bool] = False
  # SAME 5x5 conv, 2x2 pool, VALID 5x5 conv, 2x2 pool: 12x12 is the smallest input that
  # leaves a 1x1 feature map (smaller ones leave none, and the Dense layer no inputs).
  min_size: ClassVar[int] = 12

  num_classes: int
  dtype: Any = jnp.float32

  def __post_init__(self):
    _check_common(self)
    super().__post_init__()

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # No batch norm or dropout; kept for a uniform signature.
    _check_images("LeNet5", x)
    if min(x.shape[1:3]) < self.min_size:
      raise DataError(
          f"model 'lenet5' (LeNet-5) cannot take inputs of shape {tuple(x.shape[1:])}: it "
          f"needs images of at least {self.min_size}x{self.min_size} pixels; use "
          "--config.model=mlp for smaller inputs")
    x = jnp.asarray(x, self.dtype)
    x = nn.relu(nn.Conv(6, (5, 5), padding="SAME", dtype=self.dtype)(x))
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = nn.relu(nn.Conv(16, (5, 5), padding="VALID", dtype=self.dtype)(x))
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(120, dtype=self.dtype)(x))
    x = nn.relu(nn.Dense(84, dtype=self.dtype)(x))
    return _finish(nn.Dense(self.num_classes, dtype=self.dtype)(x))


# --- ResNet -------------------------------------------------------------------


def _batch_norm(train: bool, dtype) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=_BN_MOMENTUM,
                      epsilon=_BN_EPSILON, dtype=dtype)


def _conv3x3(features: int, strides: int, dtype, use_bias: bool) -> nn.Conv:
  # Explicit padding 1 (not SAME) matches PyTorch on stride-2 convs: SAME
  # pads only the bottom/right there, shifting the sampled pixels.
  return nn.Conv(features, (3, 3), strides=(strides, strides),
                 padding=((1, 1), (1, 1)), use_bias=use_bias, dtype=dtype,
                 kernel_init=_conv_init)


class _BasicBlock(nn.Module):
  """ResNet v1 basic block: two 3x3 convs, projection shortcut on reshape."""

  features: int
  strides: int
  dtype: Any

  @nn.compact
  def __call__(self, x, train: bool):
    y = _conv3x3(self.features, self.strides, self.dtype, False)(x)
    y = nn.relu(_batch_norm(train, self.dtype)(y))
    y = _conv3x3(self.features, 1, self.dtype, False)(y)
    y = _batch_norm(train, self.dtype)(y)
    if self.strides != 1 or x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1, 1), strides=(self.strides, self.strides),
                  use_bias=False, dtype=self.dtype, kernel_init=_conv_init)(x)
      x = _batch_norm(train, self.dtype)(x)
    return nn.relu(x + y)


@register("resnet18")
class ResNet(nn.Module):
  """CIFAR ResNet with basic blocks; defaults are ResNet-18.

  CIFAR stem: one 3x3 stride-1 conv and no max pool, so 32x32 inputs keep
  their resolution in the first stage. With the defaults and 10 classes it has
  11,173,962 parameters, as the torchvision-style CIFAR ResNet-18.

  Attributes:
    num_classes: number of logits.
    stage_sizes: blocks per stage; stages after the first halve the
      resolution and double the width.
    num_filters: width of the stem and the first stage.
    dtype: computation dtype (parameters stay float32).
  """

  uses_batch_norm: ClassVar[bool] = True

  num_classes: int
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  num_filters: int = 64
  dtype: Any = jnp.float32

  def __post_init__(self):
    _check_common(self)
    _check_positive_int("ResNet", "num_filters", self.num_filters)
    if isinstance(self.stage_sizes, (str, bytes)) or not self.stage_sizes or (
        not all(_is_int(s) and s > 0 for s in self.stage_sizes)):
      raise ConfigError(
          f"ResNet stage_sizes must be a non-empty sequence of positive "
          f"integers, got {self.stage_sizes!r}; use e.g. (2, 2, 2, 2)")
    super().__post_init__()

  @nn.compact
  def __call__(self, x, train: bool = False):
    _check_images("ResNet", x)
    x = jnp.asarray(x, self.dtype)
    x = _conv3x3(self.num_filters, 1, self.dtype, False)(x)
    x = nn.relu(_batch_norm(train, self.dtype)(x))
    for stage, num_blocks in enumerate(self.stage_sizes):
      for block in range(num_blocks):
        strides = 2 if stage > 0 and block == 0 else 1
        x = _BasicBlock(self.num_filters * 2**stage, strides, self.dtype)(
            x, train)
    x = jnp.mean(x, axis=(1, 2))
    return _finish(nn.Dense(self.num_classes, dtype=self.dtype)(x))


# --- VGG ----------------------------------------------------------------------

VGG16_CFG: tuple[Union[int, str], ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
    512, 512, 512, "M", 512, 512, 512, "M")


@register("vgg16")
class VGG(nn.Module):
  """CIFAR VGG with batch norm; defaults are VGG-16-BN.

  Each int in ``cfg`` is a 3x3 conv (with bias) + BN + ReLU, each ``'M'`` a
  2x2 max pool; the flattened features feed a single Dense layer. With the
  defaults the input must be 32x32 (five pools to 1x1x512); then for 10
  classes it has 14,728,266 parameters.

  Attributes:
    num_classes: number of logits.
    cfg: the layer sequence.
    dtype: computation dtype (parameters stay float32).
  """

  uses_batch_norm: ClassVar[bool] = True

  num_classes: int
  cfg: Sequence[Union[int, str]] = VGG16_CFG
  dtype: Any = jnp.float32

  def __post_init__(self):
    _check_common(self)
    if isinstance(self.cfg, (str, bytes)) or not self.cfg or not all(
        v == "M" or (_is_int(v) and v > 0) for v in self.cfg):
      raise ConfigError(
          f"VGG cfg must be a non-empty sequence of positive integers and "
          f"'M', got {self.cfg!r}; use e.g. (64, 'M', 128, 'M')")
    super().__post_init__()

  @nn.compact
  def __call__(self, x, train: bool = False):
    _check_images("VGG", x)
    pools = sum(v == "M" for v in self.cfg)
    if min(x.shape[1:3]) < 2**pools:
      raise DataError(
          f"VGG with {pools} max pools needs inputs of at least "
          f"{2**pools}x{2**pools}, got {x.shape[1]}x{x.shape[2]}; resize the "
          "inputs or use a cfg with fewer 'M'")
    x = jnp.asarray(x, self.dtype)
    for v in self.cfg:
      if v == "M":
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
      else:
        x = _conv3x3(v, 1, self.dtype, True)(x)
        x = nn.relu(_batch_norm(train, self.dtype)(x))
    x = x.reshape((x.shape[0], -1))
    return _finish(nn.Dense(self.num_classes, dtype=self.dtype)(x))


# --- Wide ResNet --------------------------------------------------------------


class _WideBlock(nn.Module):
  """Pre-activation wide basic block (Zagoruyko & Komodakis, 2016)."""

  features: int
  strides: int
  dtype: Any

  @nn.compact
  def __call__(self, x, train: bool):
    out = nn.relu(_batch_norm(train, self.dtype)(x))
    y = _conv3x3(self.features, self.strides, self.dtype, False)(out)
    y = nn.relu(_batch_norm(train, self.dtype)(y))
    y = _conv3x3(self.features, 1, self.dtype, False)(y)
    if self.strides != 1 or x.shape[-1] != self.features:
      # The projection reads the pre-activated input, as the reference code.
      x = nn.Conv(self.features, (1, 1), strides=(self.strides, self.strides),
                  use_bias=False, dtype=self.dtype, kernel_init=_conv_init)(out)
    return x + y


@register("wide_resnet")
class WideResNet(nn.Module):
  """WRN-depth-width with pre-activation blocks; defaults are WRN-16-4.

  Three groups of ``(depth - 4) / 6`` blocks with widths 16, 32 and 64 times
  ``width``; WRN-28-10 with 10 classes has 36,479,194 parameters.

  Attributes:
    num_classes: number of logits.
    depth: total depth; ``(depth - 4) % 6 == 0`` (10, 16, 22, 28, 40, ...).
    width: widening factor.
    dtype: computation dtype (parameters stay float32).
  """

  uses_batch_norm: ClassVar[bool] = True

  num_classes: int
  depth: int = 16
  width: int = 4
  dtype: Any = jnp.float32

  def __post_init__(self):
    _check_common(self)
    _check_positive_int("WideResNet", "width", self.width)
    if not _is_int(self.depth) or self.depth < 10 or (self.depth - 4) % 6:
      raise ConfigError(
          f"WideResNet depth must be an integer >= 10 with (depth - 4) % 6 "
          f"== 0, got {self.depth!r}; use e.g. 16, 22, 28 or 40")
    super().__post_init__()

  @nn.compact
  def __call__(self, x, train: bool = False):
    _check_images("WideResNet", x)
    blocks_per_group = (self.depth - 4) // 6
    x = jnp.asarray(x, self.dtype)
    x = _conv3x3(16, 1, self.dtype, False)(x)
    for group, base in enumerate((16, 32, 64)):
      for block in range(blocks_per_group):
        strides = 2 if group > 0 and block == 0 else 1
        x = _WideBlock(base * self.width, strides, self.dtype)(x, train)
    x = nn.relu(_batch_norm(train, self.dtype)(x))
    x = jnp.mean(x, axis=(1, 2))
    return _finish(nn.Dense(self.num_classes, dtype=self.dtype)(x))
