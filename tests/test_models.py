"""Tests of jaxunlearn.models.

Full-size models are only traced with ``jax.eval_shape`` (no compile, no
memory); real forward/backward passes use tiny variants and inputs because
CPU compile time dominates.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn import models
from jaxunlearn.errors import ConfigError, DataError

# rbg keys: measured here, jitting a tiny ResNet's init compiles in ~1 s with
# them and ~5 s with threefry on CPU; the models do not care which PRNG.
KEY = jax.random.key(0, impl="rbg")


def _abstract_variables(model, shape):
  return jax.eval_shape(model.init, KEY,
                        jax.ShapeDtypeStruct(shape, jnp.float32))


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("name, kwargs, shape, expected", [
    # 784*512+512 + 512*256+256 + 256*10+10.
    ("mlp", {}, (1, 28, 28, 1), 535_818),
    ("mlp", {"hidden": (32,)}, (1, 20), 20 * 32 + 32 + 32 * 10 + 10),
    ("lenet5", {}, (1, 28, 28, 1), 61_706),
    ("resnet18", {}, (1, 32, 32, 3), 11_173_962),
    ("vgg16", {}, (1, 32, 32, 3), 14_728_266),
    ("wide_resnet", {"depth": 28, "width": 10}, (1, 32, 32, 3), 36_479_194),
])
def test_parameter_counts(name, kwargs, shape, expected):
  variables = _abstract_variables(models.get_model(name, 10, **kwargs), shape)
  assert _count(variables["params"]) == expected
  assert ("batch_stats" in variables) == models.has_batch_norm(name)


def test_registry_lists_all_models():
  assert set(models.MODELS) >= {
      "mlp", "lenet5", "resnet18", "vgg16", "wide_resnet"}
  assert not models.has_batch_norm("mlp")
  assert not models.has_batch_norm("lenet5")
  assert models.has_batch_norm("resnet18")
  assert models.has_batch_norm("vgg16")
  assert models.has_batch_norm("wide_resnet")


def test_lenet5_runs_on_cifar_shape():
  variables = _abstract_variables(models.get_model("lenet5", 10),
                                  (2, 32, 32, 3))
  # 3 input channels add 2*5*5*6 conv weights; the first Dense sees 6*6*16
  # features instead of 5*5*16.
  assert _count(variables["params"]) == 61_706 + 2 * 150 + (576 - 400) * 120


# Tiny variants: (name, kwargs, input shape).
TINY = [
    ("mlp", {"hidden": (16,)}, (4, 12)),
    ("mlp", {"hidden": (16, 8)}, (4, 6, 6, 2)),
    ("lenet5", {}, (4, 28, 28, 1)),
    ("resnet18", {"stage_sizes": (1, 1), "num_filters": 4}, (4, 8, 8, 3)),
    ("vgg16", {"cfg": (4, "M", 8, "M")}, (4, 8, 8, 3)),
    ("wide_resnet", {"depth": 10, "width": 1}, (4, 8, 8, 3)),
]


def _data(shape, num_classes=3):
  x = jax.random.normal(jax.random.key(1), shape)
  y = jnp.arange(shape[0]) % num_classes
  return x, y


@pytest.mark.parametrize("name, kwargs, shape", TINY)
def test_forward_backward(name, kwargs, shape):
  model = models.get_model(name, 3, **kwargs)
  x, y = _data(shape)
  variables = jax.jit(model.init)(KEY, x)
  bn = models.has_batch_norm(name)
  assert ("batch_stats" in variables) == bn

  # Evaluation needs no mutable collection, even with batch norm, and no
  # rngs in either mode (no dropout).
  logits = jax.jit(model.apply)(variables, x)
  assert logits.shape == (shape[0], 3)
  assert logits.dtype == jnp.float32
  assert np.all(np.isfinite(logits))

  def loss_fn(params):
    v = {**variables, "params": params}
    if bn:
      out, updates = model.apply(v, x, train=True, mutable=["batch_stats"])
    else:
      out, updates = model.apply(v, x, train=True), {}
    loss = -jnp.mean(jnp.take_along_axis(
        jax.nn.log_softmax(out), y[:, None], axis=1))
    return loss, updates

  # jit: one compile is much faster on CPU than op-by-op dispatch.
  (loss, updates), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
      variables["params"])
  assert np.isfinite(loss)
  leaves = jax.tree.leaves(grads)
  assert all(np.all(np.isfinite(g)) for g in leaves)
  assert any(np.any(g != 0) for g in leaves)
  if bn:
    old = jax.tree.leaves(variables["batch_stats"])
    new = jax.tree.leaves(updates["batch_stats"])
    assert len(old) == len(new)
    assert all(not np.allclose(a, b) for a, b in zip(old, new))


def test_batch_norm_train_requires_mutable():
  model = models.get_model("wide_resnet", 3, depth=10, width=1)
  x = jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32)
  variables = jax.eval_shape(model.init, KEY, x)
  # Tracing is enough: the error comes before anything is compiled.
  with pytest.raises(Exception, match="batch_stats"):
    jax.eval_shape(functools.partial(model.apply, train=True), variables, x)


@pytest.mark.parametrize("name, kwargs, shape", [
    ("lenet5", {}, (2, 28, 28, 1)),
    ("wide_resnet", {"depth": 10, "width": 1}, (2, 8, 8, 3)),
])
def test_bfloat16_compute(name, kwargs, shape):
  model = models.get_model(name, 3, dtype=jnp.bfloat16, **kwargs)
  x, _ = _data(shape)
  variables = jax.jit(model.init)(KEY, x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  logits, state = jax.jit(functools.partial(
      model.apply, capture_intermediates=True))(variables, x)
  assert logits.dtype == jnp.float32
  assert np.all(np.isfinite(logits))
  # The computation itself ran in bf16: the last layer's output (before the
  # float32 cast) is bf16.
  dense_outputs = [v for path, v in jax.tree_util.tree_leaves_with_path(
      state["intermediates"]) if "Dense" in jax.tree_util.keystr(path)]
  assert dense_outputs and all(v.dtype == jnp.bfloat16 for v in dense_outputs)


def test_dtype_name_from_config():
  model = models.get_model("mlp", 10, dtype="bfloat16")
  assert model.dtype == jnp.bfloat16


def test_unknown_model_lists_valid_names():
  with pytest.raises(ConfigError, match="unknown model 'resnet19'.*resnet18"):
    models.get_model("resnet19", 10)
  with pytest.raises(ConfigError, match="unknown model"):
    models.has_batch_norm("nope")


@pytest.mark.parametrize("depth", [15, 27, 4, -2, 16.0, "28"])
def test_bad_wide_resnet_depth(depth):
  with pytest.raises(ConfigError, match="depth"):
    models.get_model("wide_resnet", 10, depth=depth)


@pytest.mark.parametrize("name, kwargs, match", [
    ("mlp", {"hiden": (8,)}, "unknown argument.*hiden.*hidden"),
    ("lenet5", {"depth": 3}, "unknown argument"),
    ("resnet18", {"name": "x"}, "unknown argument"),
    ("resnet18", {"num_filters": 0}, "num_filters"),
    ("resnet18", {"stage_sizes": ()}, "stage_sizes"),
    ("vgg16", {"cfg": (64, "X")}, "cfg"),
    ("mlp", {"hidden": (8, -1)}, "hidden"),
    ("wide_resnet", {"width": 0}, "width"),
    ("mlp", {"dtype": jnp.int32}, "dtype"),
    ("mlp", {"dtype": "not_a_dtype"}, "dtype"),
])
def test_bad_kwargs(name, kwargs, match):
  with pytest.raises(ConfigError, match=match):
    models.get_model(name, 10, **kwargs)


@pytest.mark.parametrize("num_classes", [0, -1, 2.5, True])
def test_bad_num_classes(num_classes):
  with pytest.raises(ConfigError, match="num_classes"):
    models.get_model("lenet5", num_classes=num_classes)
  with pytest.raises(ConfigError, match="num_classes"):
    models.get_model("mlp", num_classes)


def test_list_kwargs_become_tuples():
  model = models.get_model("mlp", 10, hidden=[8, 4])
  assert model.hidden == (8, 4)


def test_images_without_channel_axis_rejected():
  model = models.get_model("lenet5", 10)
  with pytest.raises(DataError, match="channel"):
    model.init(KEY, jnp.zeros((2, 28, 28)))


def test_duplicate_registration_rejected():
  with pytest.raises(ConfigError, match="already registered"):
    models.register("mlp")(models.LeNet5)
  assert models.MODELS["mlp"] is models.MLP
  models.register("mlp")(models.MLP)    # the same factory again (a module imported twice)
  assert models.MODELS["mlp"] is models.MLP


def test_messages_are_one_line():
  for call in (lambda: models.get_model("nope", 10),
               lambda: models.get_model("wide_resnet", 10, depth=15),
               lambda: models.get_model("mlp", 10, foo=1)):
    with pytest.raises(ConfigError) as info:
      call()
    assert "\n" not in str(info.value)
