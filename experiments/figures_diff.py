"""Are two commits' figures the same, bit for bit? ``quick``, ``quick_backdoor``, ``quick_audit``.

    python experiments/figures_diff.py --base HEAD~1 --head HEAD --out out/figures_diff
    # or compare work dirs made earlier (each holding quick/, quick_backdoor/, quick_audit/):
    python experiments/figures_diff.py --base-dir out/a --head-dir out/b

For each commit the script checks it out in a temporary git worktree and runs
``jaxunlearn run`` on ``configs/quick.py`` and ``configs/quick_backdoor.py``
and ``jaxunlearn audit`` on ``configs/quick_audit.py``, all at seed 0, with
that commit's own code. It then compares every number of ``results.json`` and
``audit.json`` and every array of ``phi/*.npy`` and ``phi/*.masks.npz``,
exactly. What is allowed to differ, and skipped: wall and compile seconds
(``time_s``, ``compile_s``, ``inputs_s``, ``reference_time_s_when_trained``,
any key ending in ``_s``), the speedups computed from them (``speedup*``),
peak memory (``peak_host_memory_mb``), ``finished``, ``environment`` and
``config`` (the record of the config in use, whose layout a refactor may
change). Keys only the head has are listed as added, not as differences.
Exit status 1 when anything else differs.

Forget hashes and stage names are keyed with the work dir's secret
(``secret.key``, random per work dir): when the base outputs exist, the head's
work dirs start with the base's secrets, so those names must match too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxunlearn import scripts  # noqa: E402

JOBS = (("quick", "run"), ("quick_backdoor", "run"), ("quick_audit", "audit"))
SKIPPED = {"time_s", "compile_s", "inputs_s", "reference_time_s_when_trained", "finished",
           "environment", "config", "peak_host_memory_mb"}


def skipped(key: str) -> bool:
  return key in SKIPPED or key.startswith("speedup") or key.endswith("_s")


def diff_json(a, b, path: str = "") -> list[str]:
  """Every difference between two JSON values, as ``path: a != b`` lines."""
  if isinstance(a, dict) and isinstance(b, dict):
    out = []
    for k in sorted(set(a) | set(b)):
      if skipped(k):
        continue
      where = f"{path}.{k}" if path else k
      if k not in a:
        out.append(f"{where}: added")
      elif k not in b:
        out.append(f"{where}: only in base")
      else:
        out += diff_json(a[k], b[k], where)
    return out
  if isinstance(a, list) and isinstance(b, list):
    if len(a) != len(b):
      return [f"{path}: {len(a)} items != {len(b)}"]
    return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff_json(x, y, f"{path}[{i}]")]
  if a != b and not (isinstance(a, float) and isinstance(b, float) and np.isnan(a)
                     and np.isnan(b)):
    return [f"{path}: {a!r} != {b!r}"]
  return []


def diff_arrays(a_path: Path, b_path: Path) -> list[str]:
  if a_path.suffix == ".npy":
    a, b = {"": np.load(a_path)}, {"": np.load(b_path)}
  else:
    with np.load(a_path) as fa, np.load(b_path) as fb:
      a, b = dict(fa), dict(fb)
  if set(a) != set(b):
    return [f"{a_path.name}: arrays {sorted(a)} != {sorted(b)}"]
  return [f"{a_path.name}{'[' + k + ']' if k else ''}: differs"
          for k in a if a[k].shape != b[k].shape or a[k].dtype != b[k].dtype
          or a[k].tobytes() != b[k].tobytes()]


def diff_dirs(base: Path, head: Path) -> dict[str, list[str]]:
  """``{job: differences}`` between two folders of job outputs."""
  out = {}
  for job, _ in JOBS:
    a, b = base / job, head / job
    lines = []
    for name in ("results.json", "audit.json"):
      if (a / name).exists() or (b / name).exists():
        if not ((a / name).exists() and (b / name).exists()):
          lines.append(f"{name}: missing on one side")
          continue
        lines += [f"{name}: {d}" for d in diff_json(json.loads((a / name).read_text()),
                                                     json.loads((b / name).read_text()))]
    names = sorted({p.name for d in (a, b) if (d / "phi").is_dir() for p in (d / "phi").iterdir()})
    for name in names:
      if not ((a / "phi" / name).exists() and (b / "phi" / name).exists()):
        lines.append(f"phi/{name}: missing on one side")
      else:
        lines += [f"phi/{d}" for d in diff_arrays(a / "phi" / name, b / "phi" / name)]
    if not lines and not any((a / n).exists() for n in ("results.json", "audit.json")):
      lines.append("no outputs on either side")
    out[job] = lines
  return out


def run_jobs(rev: str, out: Path, secrets: Path | None = None) -> None:
  """Runs the three jobs with commit ``rev``'s own code into ``out/<job>`` (each work dir
  starting with ``secrets/<job>/secret.key`` when that exists)."""
  repo = Path(__file__).resolve().parents[1]
  with tempfile.TemporaryDirectory(prefix="figures-diff-") as tmp:
    tree = Path(tmp) / "tree"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", "--detach", str(tree), rev],
                   check=True)
    try:
      env = {**os.environ, "PYTHONPATH": str(tree)}
      for job, command in JOBS:
        print(f"{rev}: {command} {job}", file=sys.stderr)
        if secrets is not None and (secrets / job / "secret.key").exists():
          (out / job).mkdir(parents=True, exist_ok=True)
          shutil.copy2(secrets / job / "secret.key", out / job / "secret.key")
        subprocess.run([sys.executable, "-m", "jaxunlearn.cli", command, "--config",
                        f"configs/{job}.py", "--workdir", str(out / job),
                        "--config.report.progress=False"], cwd=tree, env=env, check=True)
    finally:
      subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)],
                     check=False)


def main(argv=None) -> int:
  p = scripts.parser(__doc__.splitlines()[0])
  p.add_argument("--base", help="the commit to compare against (e.g. HEAD~1)")
  p.add_argument("--head", default="HEAD", help="the commit compared (default HEAD)")
  p.add_argument("--base-dir", type=Path, help="outputs of the base made earlier")
  p.add_argument("--head-dir", type=Path, help="outputs of the head made earlier")
  p.add_argument("--out", type=scripts.out_dir(), default=Path("out/figures_diff"))
  args = p.parse_args(argv)
  if (args.base is None) == (args.base_dir is None):
    p.error("give either --base REV or --base-dir DIR")
  base, head = args.base_dir, args.head_dir
  if base is None:
    base = args.out / "base"
    run_jobs(args.base, base)
  if head is None:
    head = args.out / "head"
    run_jobs(args.head, head, secrets=Path(base))
  failed = False
  for job, lines in diff_dirs(Path(base), Path(head)).items():
    added = [line for line in lines if line.endswith(": added")]
    lines = [line for line in lines if not line.endswith(": added")]
    print(f"{job}: {'identical' if not lines else f'{len(lines)} differences'}"
          + (f" ({len(added)} keys added: {', '.join(a.rsplit(':', 2)[-2].strip() for a in added)})"
             if added else ""))
    for line in lines[:50]:
      print(f"  {line}")
    failed |= bool(lines)
  return 1 if failed else 0


if __name__ == "__main__":
  scripts.run(main)
