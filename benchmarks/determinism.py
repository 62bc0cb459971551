"""Is training bit-reproducible on this backend? Trains each model twice, same key.

    python benchmarks/determinism.py
    python benchmarks/determinism.py --models mlp,lenet5 --examples 1024
    XLA_FLAGS=--xla_gpu_deterministic_ops=true python benchmarks/determinism.py

Prints, per model, whether two runs gave bit-identical parameters, and (on an
accelerator) how far the result is from the same run on the CPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxunlearn import models, results, scripts, train
from jaxunlearn.errors import ConfigError

OPTIMIZER = dict(optimizer="sgd", learning_rate=0.05, momentum=0.9, weight_decay=0.0,
                 schedule="constant")
SETUPS = {"mlp": ({"hidden": (256, 128)}, (784,)),
          "lenet5": ({}, (28, 28, 1)),
          "resnet18": ({"stage_sizes": (1, 1, 1, 1), "num_filters": 16}, (32, 32, 3))}


def params_after_training(name: str, n: int, epochs: int) -> np.ndarray:
  """The flattened parameters after ``epochs`` of SGD on ``n`` random examples, key 0."""
  kw, shape = SETUPS[name]
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(size=(n, *shape)).astype(np.float32))
  y = jnp.asarray(rng.integers(0, 10, n).astype(np.int32))
  model = models.get_model(name, 10, **kw)
  opt = train.make_optimizer(ml_collections.ConfigDict(OPTIMIZER), 100)
  key = jax.random.key(0)
  state = train.init_state(model, opt, key, shape)
  out = train.fit(model, opt, state, x, y, epochs=epochs, batch_size=128, key=key,
                  driver="scan", progress=False)
  return np.concatenate([np.asarray(leaf).ravel() for leaf in jax.tree.leaves(out.state.params)])


def main(argv=None) -> None:
  parser = scripts.parser(__doc__.splitlines()[0])
  parser.add_argument("--models", default="mlp,lenet5,resnet18",
                      help=f"comma-separated, from {', '.join(SETUPS)}")
  parser.add_argument("--examples", type=int, default=2048)
  parser.add_argument("--epochs", type=int, default=2)
  args = parser.parse_args(argv)
  names = [m.strip() for m in args.models.split(",") if m.strip()]
  unknown = [m for m in names if m not in SETUPS]
  if unknown or not names:
    raise ConfigError(f"--models {args.models!r}: unknown {unknown or 'empty list'}; "
                      f"choose from {', '.join(SETUPS)}")
  if args.examples < 128 or args.epochs < 1:
    raise ConfigError(f"--examples must be at least one batch (128) and --epochs at least 1; "
                      f"got {args.examples} and {args.epochs}")

  env = results.environment()
  print("backend", env["backend"], env["device"], "jax", env["jax"])
  for name in names:
    a = params_after_training(name, args.examples, args.epochs)
    b = params_after_training(name, args.examples, args.epochs)
    same = a.tobytes() == b.tobytes()
    line = (f"{name}: two runs "
            f"{'bit-identical' if same else f'differ, max |diff| {np.abs(a - b).max():.3g}'}")
    if jax.default_backend() != "cpu":
      with jax.default_device(jax.devices("cpu")[0]):
        c = params_after_training(name, args.examples, args.epochs)
      line += f"; vs CPU max |diff| {np.abs(a - c).max():.3g}"
    print(line, flush=True)


if __name__ == "__main__":
  scripts.run(main)
