"""Scaling of the sharded train step over 1, 2, 4, 8 devices.

Trains LeNet-5 on random MNIST-shaped inputs (labels from a fixed random
linear map) with ``train.fit`` over a mesh of
N devices (global batch split N ways, parameters replicated, gradients
all-reduced) and prints a markdown table with the machine and date.

* CPU (the default when no accelerator is present): each device count runs in
  its own subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``.
  Those N "devices" share the host's cores, so the table checks the plumbing
  (every count reaches the parameters of the same run on one device of the
  same process, and the parameters span N devices); its timings are not a
  speed claim.
* GPU / TPU: the first N real devices, for N = 1, 2, 4, ... up to the count.

    python benchmarks/scaling.py                        # CPU: 1, 2, 4, 8 devices
    python benchmarks/scaling.py --platform gpu         # the real GPUs
    python benchmarks/scaling.py --devices 1,2 --epochs 2 --out out/scaling   # scaling.{json,md}
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from jaxunlearn import scripts
from jaxunlearn.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def child(args) -> None:
  """Runs one device count; prints one JSON line."""
  import jax
  import jax.numpy as jnp
  import ml_collections
  import numpy as np

  from jaxunlearn import models, parallel, train

  devices = jax.devices()
  if len(devices) < args.child:
    raise SystemExit(f"asked for {args.child} devices, {len(devices)} present")
  mesh = parallel.make_mesh(devices[:args.child])
  rng = np.random.default_rng(0)
  x = rng.random((args.examples, 28, 28, 1), dtype=np.float32)
  # Learnable labels (a fixed random linear map), so training is not noise-fitting.
  w = rng.normal(size=(28 * 28, 10)).astype(np.float32)
  y = jnp.asarray(np.argmax((x.reshape(len(x), -1) - 0.5) @ w, -1).astype(np.int32))
  x = jnp.asarray(x)
  model = models.get_model("lenet5", 10)
  opt = train.make_optimizer(ml_collections.ConfigDict(
      {"optimizer": "sgd", "learning_rate": 0.02, "momentum": 0.9}))

  def run(run_mesh):
    state = train.init_state(model, opt, jax.random.key(0), (28, 28, 1))
    return train.fit(model, opt, state, x, y, epochs=args.epochs, batch_size=args.batch,
                     key=jax.random.key(1), driver=args.driver, mesh=run_mesh, progress=False)

  result = run(mesh)
  params = jax.tree.leaves(result.state.params)
  # The reference runs in this same process: processes started with other
  # device counts configure XLA's CPU threads differently, and their rounding
  # differences grow over the steps.
  single = jax.tree.leaves(run(parallel.make_mesh(devices[:1])).state.params)
  diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(params, single))
  steps = args.epochs * (args.examples // args.batch)
  print(json.dumps({
      "devices": args.child, "batch": args.batch, "per_device": args.batch // args.child,
      "compile_s": result.compile_s, "step_ms": 1e3 * result.run_s / steps,
      "examples_s": steps * args.batch / result.run_s, "loss": result.history[-1]["loss"],
      "diff": diff, "spanned": min(len(p.sharding.device_set) for p in params),
      "backend": jax.default_backend(), "device_kind": devices[0].device_kind,
      "driver": train.resolve_driver(args.driver, mesh)}))


def _env(platform_name: str, count: int | None) -> dict:
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
  env.pop("XLA_FLAGS", None)
  if platform_name == "cpu":
    env["JAX_PLATFORMS"] = "cpu"
    if count:
      env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={count}"
  elif platform_name != "auto":
    env["JAX_PLATFORMS"] = {"gpu": "cuda"}.get(platform_name, platform_name)
  return env


def _probe(platform_name: str) -> tuple[str, int]:
  code = "import jax; print(jax.default_backend(), jax.device_count())"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=_env(platform_name, None), timeout=300, check=True)
  backend, count = out.stdout.split()[-2:]
  return backend, int(count)


def _versions() -> str:
  from importlib.metadata import version
  return ", ".join(f"{p} {version(p)}" for p in ("jax", "jaxlib", "flax", "optax"))


def _machine() -> str:
  cpu = platform.processor() or platform.machine()
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
  except OSError:
    pass
  return f"{platform.node()}: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv=None) -> int:
  parser = scripts.parser(__doc__.splitlines()[0])
  parser.add_argument("--platform", default="auto", choices=["auto", "cpu", "gpu", "tpu"])
  parser.add_argument("--devices", type=scripts.int_list("--devices", allow_empty=True),
                      default="", help="comma-separated counts (default: "
                      "1,2,4,8 on CPU; powers of two up to the device count elsewhere)")
  parser.add_argument("--batch", type=int, default=256, help="global batch size")
  parser.add_argument("--examples", type=int, default=2048)
  parser.add_argument("--epochs", type=int, default=3)
  # The scan on every count, so that the rows compare one driver (with
  # 'auto', one CPU device would take the loop and several the scan).
  parser.add_argument("--driver", default="scan", choices=["auto", "loop", "scan"])
  parser.add_argument("--out", default="", type=scripts.out_dir(optional=True),
                      help="folder for scaling.json and scaling.md")
  parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  for flag in ("batch", "examples", "epochs"):
    if getattr(args, flag) < 1:
      raise ConfigError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
  if any(n < 1 for n in args.devices):
    raise ConfigError(f"--devices counts must be at least 1, got {args.devices}")
  if args.child:
    child(args)
    return 0

  backend, count = _probe(args.platform)
  forced = backend == "cpu"
  plat = "cpu" if forced else args.platform
  if args.devices:
    counts = list(args.devices)
    if not forced and max(counts) > count:
      raise ConfigError(f"--devices asks for {max(counts)} devices; this {backend} machine "
                        f"has {count}")
  elif forced:
    counts = [1, 2, 4, 8]
  else:
    counts = [2 ** i for i in range(count.bit_length()) if 2 ** i <= count]
  rows = []
  for n in counts:
    cmd = [sys.executable, __file__, "--child", str(n), "--batch", str(args.batch),
           "--examples", str(args.examples), "--epochs", str(args.epochs),
           "--driver", args.driver]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800,
                          env=_env(plat, n if forced else None))
    if proc.returncode:
      print(proc.stderr[-3000:], file=sys.stderr)
      return proc.returncode
    rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))

  first = rows[0]
  kind = "forced host-platform CPU devices" if forced else f"{first['device_kind']} devices"
  lines = [
      f"Sharded train step, LeNet-5, {args.examples} random 28x28x1 examples "
      f"(learnable labels), SGD lr 0.02 momentum 0.9, "
      f"global batch {args.batch}, {args.epochs} epochs, driver {first['driver']}",
      "",
      f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
      f"- machine: {_machine()}",
      f"- backend: {first['backend']} ({kind})",
      f"- versions: {_versions()}",
      "",
      f"| devices | per-device batch | compile s | step ms | examples/s | final loss "
      f"| max abs param diff vs 1 device | params span devices |",
      "|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    lines.append(f"| {r['devices']} | {r['per_device']} | {r['compile_s']:.2f} | "
                 f"{r['step_ms']:.1f} | {r['examples_s']:.0f} | {r['loss']:.6f} | "
                 f"{r['diff']:.1e} | {r['spanned']} |")
  if forced:
    lines += ["", "Forced CPU devices share the same cores: the timings show the cost of "
              "the plumbing, not a speed-up."]
  text = "\n".join(lines)
  print(text)
  if args.out:
    # Imported here: the children import this module before their devices are set up.
    if str(ROOT) not in sys.path:
      sys.path.insert(0, str(ROOT))
    from benchmarks import common
    common.write_outputs(args.out, "scaling", {"rows": rows, "forced_cpu_devices": forced}, text)
  return 0


if __name__ == "__main__":
  scripts.run(main)
