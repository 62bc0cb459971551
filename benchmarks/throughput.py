"""Training throughput per model: JAX (this library) against PyTorch eager.

    PYTHONPATH=. python benchmarks/throughput.py --out /tmp/throughput
    PYTHONPATH=. python benchmarks/throughput.py --models lenet5,resnet18 --epochs 3 --dtype bfloat16

For each model, at its config batch size (64 for the MNIST-shaped models,
128 for the CIFAR-shaped ones), on synthetic data of the real shapes (random
images and labels: the cost of a step does not depend on the values):

* JAX: ``jaxunlearn.train.fit`` with the chosen driver (``auto``: the host
  loop on CPU, one ``lax.scan`` per epoch elsewhere). One warm-up epoch
  compiles (its ``compile_s`` is reported), then each timed epoch is its own
  ``fit(epochs=1)`` call continuing from the previous state, so every epoch
  has its own ``run_s``. Repeat calls re-trace the step; the persistent
  compilation cache (in a temp dir) saves them the compile, and neither
  counts in ``run_s``.
* PyTorch (when installed): the same models (``benchmarks/torch_models.py``,
  equal parameter counts) trained by the plain eager loop of PyTorch
  unlearning libraries: per batch ``zero_grad``, forward, cross-entropy,
  ``backward``, ``step``; data already on the device, shuffled by a
  ``randperm`` each epoch; one warm-up epoch; the clock stops after
  ``torch.cuda.synchronize()`` on GPU. ``--dtype bfloat16`` runs the forward
  pass under ``torch.autocast`` (mixed precision, as the JAX models'
  ``dtype=bfloat16``). bfloat16 is for GPUs/TPUs: XLA's CPU backend runs
  bfloat16 convolutions far slower than float32.

Both sides use SGD (momentum 0.9, learning rate 0.01), drop the last partial
batch, and report the median epoch time of ``--epochs`` timed epochs;
images/s counts the images actually trained on. ``speedup`` is
``torch_epoch_s / jax_epoch_s``. Writes ``throughput.json`` and
``throughput.md`` to ``--out``.

On CPU, PyTorch gets one thread per available core (``torch.set_num_threads``;
``--torch_threads`` overrides) and XLA's CPU backend uses all cores by itself.
On a CPU shared with other work, PyTorch's OpenMP threads slow down far more
than one thread does when the cores are oversubscribed: compare with
``--torch_threads 1`` there.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time

if __name__ == "__main__":
  # JAX preallocates 75% of GPU memory; leave room for PyTorch in this process.
  os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from jaxunlearn import models, train  # noqa: E402
from jaxunlearn import scripts  # noqa: E402

NUM_CLASSES = 10
# Which dataset shape each model is benchmarked on.
KIND = {"lenet5": "mnist", "mlp": "mnist", "resnet18": "cifar", "vgg16": "cifar",
        "wide_resnet": "cifar"}
DEFAULT_N = {"mnist": 60000, "cifar": 50000}
LEARNING_RATE = 0.01
MOMENTUM = 0.9


def parse_args(argv=None):
  p = scripts.parser(__doc__.split("\n")[0])
  p.add_argument("--models", default=",".join(KIND),
                 help=f"comma-separated, from: {', '.join(KIND)}")
  p.add_argument("--n", type=int, default=0,
                 help="images per epoch for every model (0: 60000 MNIST-shaped, 50000 CIFAR-shaped)")
  p.add_argument("--n_mnist", type=int, default=0, help="images per epoch, MNIST-shaped models")
  p.add_argument("--n_cifar", type=int, default=0, help="images per epoch, CIFAR-shaped models")
  p.add_argument("--epochs", type=int, default=2, help="timed epochs (after one warm-up epoch)")
  p.add_argument("--batch_mnist", type=int, default=64)
  p.add_argument("--batch_cifar", type=int, default=128)
  p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                 help="computation dtype; bfloat16 is mixed precision (float32 parameters)")
  p.add_argument("--driver", default="auto", choices=train.DRIVERS, help="JAX epoch driver")
  p.add_argument("--no_torch", action="store_true", help="skip the PyTorch column")
  p.add_argument("--torch_threads", type=int, default=0,
                 help="torch.set_num_threads on CPU (0: one per available core)")
  p.add_argument("--cudnn_benchmark", action="store_true",
                 help="set torch.backends.cudnn.benchmark (off in the plain eager loop)")
  p.add_argument("--no_compile_cache", action="store_true",
                 help="do not enable JAX's persistent compilation cache (each epoch call recompiles)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", default="", type=scripts.out_dir(optional=True),
                 help="folder for throughput.json and throughput.md")
  args = p.parse_args(argv)
  args.models = [m.strip() for m in args.models.split(",") if m.strip()]
  unknown = [m for m in args.models if m not in KIND]
  if unknown or not args.models:
    p.error(f"unknown model(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from: {', '.join(KIND)}")
  for flag in ("n", "n_mnist", "n_cifar", "torch_threads"):
    if getattr(args, flag) < 0:
      p.error(f"--{flag} must be >= 0 (0 means the default), got {getattr(args, flag)}")
  for flag in ("epochs", "batch_mnist", "batch_cifar"):
    if getattr(args, flag) < 1:
      p.error(f"--{flag} must be a positive integer, got {getattr(args, flag)}")
  return args


def images_per_epoch(args, kind: str) -> int:
  return getattr(args, f"n_{kind}") or args.n or DEFAULT_N[kind]


def synthetic(kind: str, n: int, seed: int):
  """Uniform random images (N, H, W, C) float32 and random int32 labels."""
  rng = np.random.default_rng(seed)
  x = rng.random((n, *common.SHAPES[kind]), dtype=np.float32)
  y = rng.integers(0, NUM_CLASSES, n, dtype=np.int32)
  return x, y


def _cores() -> int:
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


# --- JAX ----------------------------------------------------------------------


def jax_epochs(name: str, x: np.ndarray, y: np.ndarray, batch: int, args) -> dict:
  """One warm-up epoch, then ``args.epochs`` timed ``fit(epochs=1)`` calls."""
  kwargs = {} if args.dtype == "float32" else {"dtype": args.dtype}
  model = models.get_model(name, NUM_CLASSES, **kwargs)
  optimizer = train.make_optimizer(common.Cfg(
      optimizer="sgd", learning_rate=LEARNING_RATE, momentum=MOMENTUM, weight_decay=0.0,
      schedule="constant"))
  key = jax.random.key(args.seed)
  # One jitted init compiles once instead of op by op (slow for the deep models).
  state = jax.jit(lambda k: train.init_state(model, optimizer, k, x.shape[1:]))(
      jax.random.fold_in(key, 0))
  xd, yd = jnp.asarray(x), jnp.asarray(y)
  run_s, recompile_s, loss = [], [], None
  for e in range(args.epochs + 1):
    res = train.fit(model, optimizer, state, xd, yd, epochs=1, batch_size=batch,
                    key=jax.random.fold_in(key, e + 1), driver=args.driver,
                    stage=f"{name} jax", progress=False)
    state, loss = res.state, res.history[-1]["loss"]
    if e == 0:
      compile_s = res.compile_s
    else:
      run_s.append(res.run_s)
      recompile_s.append(res.compile_s)
  del state, xd, yd
  return {"jax_epoch_s": statistics.median(run_s), "jax_epochs_s": run_s,
          "jax_compile_s": compile_s, "jax_recompile_s": recompile_s, "jax_last_loss": loss}


# --- PyTorch ------------------------------------------------------------------


def import_torch():
  """``(torch, torch_models)``, or ``(None, None)`` when PyTorch is missing."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    from benchmarks import torch_models  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None, None
  return torch, torch_models


def torch_device(torch):
  return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def torch_device_name(torch) -> str:
  if torch.cuda.is_available():
    return f"cuda: {torch.cuda.get_device_name(0)}"
  return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def torch_epochs(torch, torch_models, name: str, x: np.ndarray, y: np.ndarray, batch: int,
                 args) -> dict:
  """The plain eager loop: one warm-up epoch, then ``args.epochs`` timed ones."""
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  device = torch_device(torch)
  cuda = device.type == "cuda"
  torch.manual_seed(args.seed)
  model = torch_models.get_model(name, NUM_CLASSES).to(device).train()
  opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
  xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device)  # NCHW
  yt = torch.from_numpy(y.astype(np.int64)).to(device)
  n = xt.shape[0]
  batch = min(batch, n)
  steps = n // batch
  gen = torch.Generator(device=device).manual_seed(args.seed)
  bf16 = args.dtype == "bfloat16"

  def epoch() -> float:
    perm = torch.randperm(n, device=device, generator=gen)
    losses = []
    for i in range(steps):
      idx = perm[i * batch:(i + 1) * batch]
      xb, yb = xt[idx], yt[idx]
      opt.zero_grad()
      with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = F.cross_entropy(model(xb), yb)
      loss.backward()
      opt.step()
      losses.append(loss.detach())
    mean = torch.stack(losses).float().mean()
    if cuda:
      torch.cuda.synchronize()
    return float(mean)

  epoch()  # warm-up: allocator, kernel selection
  times, loss = [], None
  for _ in range(args.epochs):
    t0 = time.perf_counter()
    loss = epoch()
    times.append(time.perf_counter() - t0)
  del model, opt, xt, yt
  if cuda:
    torch.cuda.empty_cache()
  return {"torch_epoch_s": statistics.median(times), "torch_epochs_s": times,
          "torch_last_loss": loss}


# --- driver -------------------------------------------------------------------


def measure(args) -> dict:
  torch, torch_models = (None, None) if args.no_torch else import_torch()
  if torch is None and not args.no_torch:
    print("PyTorch not installed: JAX only")
  if torch is not None:
    if torch_device(torch).type == "cpu":
      torch.set_num_threads(args.torch_threads or _cores())
    torch.backends.cudnn.benchmark = bool(args.cudnn_benchmark)
  if not args.no_compile_cache:
    common.enable_compile_cache()

  data, rows = {}, []
  for name in args.models:
    kind = KIND[name]
    n = images_per_epoch(args, kind)
    if kind not in data:
      data = {kind: synthetic(kind, n, args.seed)}  # keep one dataset in memory at a time
    x, y = data[kind]
    batch = min(getattr(args, f"batch_{kind}"), n)
    images = (n // batch) * batch
    r = {"model": name, "input_shape": list(common.SHAPES[kind]), "batch_size": batch, "n": n,
         "images_per_epoch": images}
    r.update(jax_epochs(name, x, y, batch, args))
    r["jax_images_per_s"] = images / r["jax_epoch_s"]
    if torch is not None:
      r.update(torch_epochs(torch, torch_models, name, x, y, batch, args))
      r["torch_images_per_s"] = images / r["torch_epoch_s"]
      r["speedup"] = r["torch_epoch_s"] / r["jax_epoch_s"]
    rows.append(r)
    print(f"{name}: jax {r['jax_epoch_s']:.3f} s/epoch"
          + (f", torch {r['torch_epoch_s']:.3f} s/epoch" if torch is not None else ""),
          flush=True)

  return {
      "rows": rows, "dtype": args.dtype, "driver": train.resolve_driver(args.driver),
      "epochs": args.epochs, "optimizer": f"sgd lr {LEARNING_RATE} momentum {MOMENTUM}",
      "machine": common.machine(),
      "torch_device": torch_device_name(torch) if torch is not None else None,
      "cudnn_benchmark": bool(args.cudnn_benchmark) if torch is not None else None,
      "date": common.today(),
      "versions": common.versions() + (f", torch {torch.__version__}" if torch is not None
                                       else ", torch not installed"),
  }


HEADER = ["model", "input shape", "batch", "n", "JAX epoch s", "JAX img/s", "JAX compile s",
          "torch epoch s", "torch img/s", "speedup"]


def table_row(r: dict) -> list:
  missing = "–"
  return [r["model"], "x".join(map(str, r["input_shape"])), r["batch_size"], r["n"],
          r["jax_epoch_s"], r["jax_images_per_s"], r["jax_compile_s"],
          r.get("torch_epoch_s", missing), r.get("torch_images_per_s", missing),
          r.get("speedup", missing)]


def report(result: dict) -> str:
  torch_line = (f"PyTorch eager on {result['torch_device']}"
                + (", cudnn.benchmark" if result["cudnn_benchmark"] else "")
                if result["torch_device"] else "PyTorch not installed: JAX only")
  head = (f"Machine: {result['machine']}; {torch_line}; {result['date']}; {result['versions']}\n"
          f"{result['dtype']}, JAX driver {result['driver']}, {result['optimizer']}, "
          f"median of {result['epochs']} timed epoch(s) after 1 warm-up; "
          "speedup = torch epoch s / JAX epoch s")
  return head + "\n\n" + common.markdown_table(HEADER, [table_row(r) for r in result["rows"]])


def main(argv=None) -> dict:
  args = parse_args(argv)
  result = measure(args)
  text = report(result)
  print(text)
  common.write_outputs(args.out, "throughput", result, text)
  return result


if __name__ == "__main__":
  scripts.run(main)
