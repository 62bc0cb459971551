"""Bad input everywhere a user can reach it: refused before any work, in one line, exit 2.

Every refusal of ``jaxunlearn run`` and ``jaxunlearn audit`` is one row of
``REFUSALS``: the extra command-line arguments, the words the error line must
hold, and (where ``pipeline.run`` reaches it) the exception type the API
raises. One test runs every row in-process against a copy of a finished tiny
run that it must leave byte-for-byte unchanged (and, for ``fresh`` rows, also
against a work directory that must still not exist), with training, saving and
populations made to raise, so reaching them fails the row instead of timing
it. Adding a refusal is adding a row.

Below the table: refusals that need more than a row (the scripts in
``experiments/`` and ``benchmarks/``, plugins, the real program in a
subprocess, an unwritable directory), and index files and arrays fuzzed with
hypothesis through the API.
"""

import ast
import contextlib
import dataclasses
import errno
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from jaxunlearn import checkpoint, cli, data, pipeline, populations, scripts, splits, train
from jaxunlearn import workdir as workdir_lib
from jaxunlearn.datasets import fashion_mnist as fashion_mnist_lib
from jaxunlearn.errors import (CheckpointError, ConfigError, DataError, JaxUnlearnError,
                               PluginError, SplitError, WorkdirError, WriteError)
from tests.support import idx_files, tiny

N = tiny.N_TRAIN
X, Y, XT, YT = tiny.make_arrays()


@dataclasses.dataclass(frozen=True)
class Refusal:
  id: str
  args: tuple | Callable          # extra CLI arguments, or setup(tmp, npz) -> arguments
  words: tuple                    # each must be in the one error line
  error: type | None = None       # what pipeline.run raises, checked too where given
  command: str = "run"
  fresh: bool = False             # also refused on a work dir that does not exist yet
  workdir: Callable | None = None  # (tmp, finished) -> the work dir, instead of the finished one
  private: bool = False           # the setup changes the data: run on a copy of run and data

  def extra(self, tmp, npz) -> list:
    return list(self.args(tmp, npz) if callable(self.args) else self.args)


def _index_file(name, content: bytes | str | np.ndarray | list, mode="indices"):
  def setup(tmp, npz):
    path = tmp / name
    if isinstance(content, (np.ndarray, list)):
      np.save(path, np.asarray(content))
    else:
      path.write_bytes(content.encode() if isinstance(content, str) else content)
    flags = [f"--config.forget.index_file={path}"]
    return [f"--config.forget.mode={mode}", *flags] if mode else flags
  return setup


def _npz(**arrays):
  def setup(tmp, npz):
    path = tmp / "bad.npz"
    base = dict(zip(("x_train", "y_train", "x_test", "y_test"), tiny.make_arrays()))
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return [f"--config.dataset=npz:{path}"]
  return setup


def _raw(content: bytes):
  def setup(tmp, npz):
    path = tmp / "raw.npz"
    path.write_bytes(content)
    return [f"--config.dataset=npz:{path}"]
  return setup


def _config_file(body):
  def setup(tmp, npz):
    path = tmp / "bad_config.py"
    path.write_text("from jaxunlearn.plugins import default_config\n\n\ndef get_config():\n"
                    f"  c = default_config()\n  c.model = 'mlp'\n  {body}\n  return c\n")
    return [f"--config={path}"]
  setup.config_file = True
  return setup


def _no_get_config(tmp, npz):
  path = tmp / "no_get_config.py"
  path.write_text("X = 1\n")
  return [f"--config={path}"]


def _rewrite_npz(tmp, npz):
  x, y, xt, yt = tiny.make_arrays(seed=7)
  np.savez(npz, x_train=x, y_train=y, x_test=xt, y_test=yt)
  return []


def _idx_dataset(tmp, damage) -> list:
  """``--config.dataset=idx:DIR`` of a folder of IDX files that ``damage`` (one of the IDX
  block's, below) wrote."""
  damage(tmp / "idx_set")
  return [f"--config.dataset=idx:{tmp / 'idx_set'}"]


def _file(path: Path, mode=0o644, text="x") -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
  path.chmod(mode)
  return path


def _damaged(tmp, fin, stage: str) -> Path:
  """A copy of the finished run whose ``stage`` checkpoint has one byte of its largest file
  flipped (made once per test directory)."""
  workdir = tmp / f"damaged-{stage}"
  if not workdir.exists():
    shutil.copytree(fin, workdir)
    files = [p for p in (tiny.stage_dirs(workdir)[stage] / "0").rglob("*") if p.is_file()]
    target = max(files, key=lambda p: p.stat().st_size)
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    target.write_bytes(bytes(raw))
  return workdir


def _audit_specs(*specs):
  return ("--config.audit.num_models=4", "--config.audit.statistics=('epsilon',)",
          f"--config.audit.methods={tuple(specs)!r}")


def _audit(id, *specs_and_words, **kw):
  """An ``audit`` row refusing an ``audit.methods`` entry (the last argument: the words)."""
  *specs, words = specs_and_words
  return Refusal(id, _audit_specs(*specs), words, command="audit", **kw)


def _ulira_flags(setting):
  """An ``audit`` of one method with one ``audit.ulira`` field set."""
  return ("--config.audit.num_models=4", "--config.audit.methods=('finetune',)",
          f"--config.audit.ulira.{setting}")


def _klom_flags(setting):
  """An ``audit`` of KLOM alone with one ``audit.klom`` field set."""
  return ("--config.audit.num_models=4", "--config.audit.methods=('finetune',)",
          "--config.audit.statistics=('klom',)", f"--config.audit.klom.{setting}")


def _retrain_short(*flags):
  return ("--config.unlearn.method=retrain_short", *flags)


R, A = Refusal, _audit
REFUSALS = [
    # Configs.
    R("unknown-override", ("--config.train.epoch=3",), ("unknown config field",), fresh=True),
    R("unknown-in-file", _config_file("c.train.epoch = 3"), ("unknown config field 'train.epoch'",),
      ConfigError, fresh=True),
    R("wrong-type-flag", ("--config.train.epochs=two",), ("bad flags",), fresh=True),
    R("wrong-type-file", _config_file("c.unlearn.lam = 'big'"), ("lam",), fresh=True),
    R("negative-forget-size", ("--config.forget.size=-3",), ("'forget.size' must be >= 0",),
      error=ConfigError, fresh=True),
    R("zero-batch", ("--config.train.batch_size=0",), ("'train.batch_size' must be > 0",),
      error=ConfigError, fresh=True),
    R("negative-epochs", ("--config.unlearn.epochs=-1",), ("'unlearn.epochs' must be > 0",),
      error=ConfigError, fresh=True),
    R("negative-reference", ("--config.reference.size=-5",),
      ("'reference.size' must be a fraction < 1 or a whole count",), error=ConfigError, fresh=True),
    R("fraction-one", ("--config.forget.size=0", "--config.forget.fraction=1.0"),
      ("'forget.fraction' must be in (0, 1)",), error=ConfigError, fresh=True),
    R("fraction-above-one", ("--config.forget.fraction=1.5",),
      ("'forget.fraction' must be in (0, 1)",), error=ConfigError, fresh=True),
    R("forget-everything", (f"--config.forget.size={N}",),
      ("must be smaller than the training set",), error=SplitError, fresh=True),
    R("reference-above-remain", ("--config.reference.size=229",), ("larger than the remain set",),
      error=SplitError, fresh=True),
    R("reference-fraction-above-remain", ("--config.reference.size=0.99",),
      ("larger than the remain set",), error=SplitError, fresh=True),
    R("reference-fractional-count", ("--config.reference.size=2.5",),
      ("'reference.size' must be a fraction < 1 or a whole count",), error=ConfigError, fresh=True),
    R("holdout-keeps-nearly-everything", ("--config.holdout.size=0.99",),
      ("holdout.size", "lower holdout.size")),
    R("nan-learning-rate", ("--config.train.learning_rate=nan",), ("finite",), error=ConfigError,
      fresh=True),
    R("inf-learning-rate", ("--config.unlearn.learning_rate=inf",), ("finite",),
      error=ConfigError, fresh=True),
    R("lam-zero", ("--config.unlearn.lam=0",), ("unlearn.lam must be in (0, 1]",),
      error=ConfigError, fresh=True),
    R("lam-above-one", ("--config.unlearn.lam=1.5",), ("unlearn.lam must be in (0, 1]",),
      error=ConfigError, fresh=True),
    R("forget-fraction-rounds-to-nothing", ("--config.forget.size=0",
                                            "--config.forget.fraction=0.0001"), ("empty",),
      fresh=True),
    R("negative-seed", ("--config.seed=-1",), ("'seed' must be >= 0",), error=ConfigError,
      fresh=True),
    R("bad-forget-seed", ("--config.forget.seed=-2",), ("'forget.seed'",), error=ConfigError,
      fresh=True),
    R("class-not-int", ("--config.forget.mode=class", "--config.forget.classes=('a',)"),
      ("forget.classes",), error=ConfigError, fresh=True),
    R("class-absent", ("--config.forget.mode=class", "--config.forget.classes=(7,)"),
      ("no training example has class",), error=SplitError, fresh=True),
    R("bad-choice", ("--config.train.optimizer=adagrad",), ("train.optimizer",),
      error=ConfigError, fresh=True),
    R("unknown-method", ("--config.unlearn.method=no_such_method",),
      ("unknown unlearning method",), error=ConfigError, fresh=True),
    R("unknown-model", ("--config.model=transformer",), ("unknown model",), fresh=True),
    R("model-does-not-fit-data", _config_file("c.model = 'lenet5'"),
      ("cannot take inputs of shape",), fresh=True),
    R("unknown-dataset", ("--config.dataset=imagenet",), ("unknown dataset",), error=DataError,
      fresh=True),
    R("missing-config-file", lambda tmp, npz: [f"--config={tmp / 'nope.py'}"],
      ("cannot load the config file",), fresh=True),
    R("broken-config-file", _config_file("c.train.epochs = (((("),
      ("cannot load the config file",), fresh=True),
    R("config-file-without-get_config", _no_get_config, ("get_config",)),
    # Silent wrong results otherwise.
    R("data-rewritten-under-the-same-path", _rewrite_npz, ("other data", "restore"), private=True),
    R("index-file-without-mode-indices", _index_file("f.txt", "1 2 3\n", mode=None),
      ("forget.index_file", "forget.mode=indices")),
    R("stray-label-beyond-the-classes", _npz(y_train=np.r_[Y[:-1], 9]),
      ("never occur in y_train", "num_classes")),
    R("label-outside-the-declared-classes", ("--config.num_classes=3",),
      ("out of range", "num_classes")),
    R("0..255-float-images", _npz(x_train=255.0 * X), ("outside [0, 1]", "input_scale")),
    # Index files.
    R("index-not-integer", _index_file("f.txt", "1 2 three"), ("must hold whole numbers only",),
      error=SplitError, fresh=True),
    R("index-fraction-text", _index_file("f.txt", "1.5 2"), ("whole numbers",)),
    R("index-fraction", _index_file("f.txt", "1, 2.5"), ("non-integer",), error=SplitError,
      fresh=True),
    R("index-float-npy", _index_file("f.npy", [1.0, 2.5]), ("non-integer",), error=SplitError,
      fresh=True),
    R("index-out-of-range", _index_file("f.txt", f"3 {N}"), ("outside [0, 240)",),
      error=SplitError, fresh=True),
    R("index-negative", _index_file("f.txt", "-1 5"), ("outside [0, 240)",), error=SplitError,
      fresh=True),
    R("index-huge", _index_file("f.txt", "5 " + "9" * 30), ("outside [0, 240)",),
      error=SplitError, fresh=True),
    R("index-duplicate", _index_file("f.txt", "4\n7\n4\n"), ("duplicate indices, e.g. 4",),
      error=SplitError, fresh=True),
    R("index-empty", _index_file("f.txt", ""), ("is empty",), error=SplitError, fresh=True),
    R("index-empty-npy", _index_file("f.npy", np.zeros(0, np.int64)), ("is empty",),
      error=SplitError, fresh=True),
    R("index-2d-npy", _index_file("f.npy", np.arange(6).reshape(2, 3)), ("1-D",),
      error=SplitError, fresh=True),
    R("index-damaged-npy", _index_file("f.npy", b"\x93NUMPY\x01\x00garbage"), ("cannot read",),
      error=SplitError, fresh=True),
    R("index-binary-text", _index_file("f.txt", b"\xff\xfe\x00\x01"), ("cannot read",),
      error=SplitError, fresh=True),
    R("index-all", _index_file("f.txt", " ".join(map(str, range(N)))), ("nothing would remain",),
      error=SplitError, fresh=True),
    R("index-missing", lambda tmp, npz: ["--config.forget.mode=indices",
                                         f"--config.forget.index_file={tmp / 'none.txt'}"],
      ("does not exist",), error=SplitError, fresh=True),
    R("index-is-a-directory", lambda tmp, npz: ["--config.forget.mode=indices",
                                                f"--config.forget.index_file={tmp}"],
      ("is a directory",)),
    # Arrays.
    R("npz-missing", lambda tmp, npz: [f"--config.dataset=npz:{tmp / 'none.npz'}"],
      ("does not exist",), error=DataError, fresh=True),
    R("npz-lengths", _npz(y_train=Y[:-1]), ("has 240 rows but y_train has 239",),
      error=DataError, fresh=True),
    R("npz-nan", _npz(x_train=np.where(np.arange(X.size).reshape(X.shape) == 5, np.nan, X)),
      ("NaN or infinite",), error=DataError, fresh=True),
    R("npz-negative-label", _npz(y_test=np.where(np.arange(YT.size) == 0, -1, YT)),
      ("negative label",), error=DataError, fresh=True),
    R("npz-fractional-label", _npz(y_train=Y + 0.5), ("non-integer float labels",),
      error=DataError, fresh=True),
    R("npz-onehot-labels", _npz(y_train=np.eye(4)[Y]), ("labels must be 1-D",), error=DataError,
      fresh=True),
    R("npz-rank", _npz(x_train=X.reshape(-1), x_test=XT.reshape(-1)), ("inputs must be",),
      error=DataError, fresh=True),
    R("npz-shape-mismatch", _npz(x_test=XT[:, :4]), ("must share one per-example shape",),
      error=DataError, fresh=True),
    R("npz-missing-array", _npz(y_test=None), ("lacks the arrays y_test",), error=DataError,
      fresh=True),
    R("npz-not-zip", _raw(b"this is not a zip archive" * 10),
      ("not an .npz archive", "numpy.savez"), error=DataError, fresh=True),
    R("idx-folder-missing", ("--config.dataset=idx:/nonexistent",),
      ("idx:/nonexistent does not exist",), error=DataError, fresh=True),
    R("idx-set-truncated", lambda tmp, npz: _idx_dataset(tmp, _truncated_gz),
      ("truncated", "train-labels-idx1-ubyte.gz"), error=DataError, fresh=True),
    # Work directories.
    R("workdir-is-file", (), ("is a file",), error=WorkdirError,
      workdir=lambda tmp, fin: _file(tmp / "afile")),
    R("workdir-parent-is-file", (), ("is a file",), error=WorkdirError,
      workdir=lambda tmp, fin: _file(tmp / "exe", mode=0o755) / "sub" / "work"),
    R("workdir-other-config", ("--config.train.epochs=3",),
      ("holds a run of a different config",), error=WorkdirError, workdir=lambda tmp, fin: fin),
    R("workdir-bad-run-json", (), ("unreadable",), error=WorkdirError,
      workdir=lambda tmp, fin: _file(tmp / "wd" / "run.json", text="{half").parent),
    # Unlearning plans of the audit (audit.methods entries) and the audit's own settings:
    # everything that can be checked without training is.
    A("audit-zero-learning-rate", "finetune:learning_rate=0.0",
      ("audit.methods entry", "learning_rate", "> 0")),
    A("audit-negative-learning-rate", "finetune:learning_rate=-0.1",
      ("audit.methods entry", "learning_rate")),
    A("audit-zero-epochs", "finetune:epochs=0", ("audit.methods entry", "epochs", "> 0")),
    A("audit-spec-overriding-the-method", "mine=finetune:method=lightweight",
      ("audit.methods entry", "label=lightweight")),
    A("audit-unknown-method", "nope", ("audit.methods entry 'nope'", "unknown method")),
    A("audit-non-number-hyperparameter", "lightweight:lam=abc",
      ("audit.methods entry", "lam", "number")),
    A("audit-unknown-stop", "finetune:stop=sometimes", ("stop", "one of")),
    A("audit-unknown-kl_reduction", "lightweight:kl_reduction=max", ("kl_reduction", "one of")),
    A("audit-unknown-optimizer", "finetune:optimizer=lion", ("optimizer", "one of")),
    A("audit-unknown-schedule", "finetune:schedule=wavy", ("schedule", "one of")),
    A("audit-tol-without-a-reference", "finetune:tol=0.1", ("tol", "reference")),
    A("audit-nan-learning-rate", "finetune:learning_rate=nan", ("learning_rate", "finite")),
    A("audit-zero-forget-batch", "finetune:forget_batch_size=0", ("forget_batch_size", "> 0")),
    R("audit-one-ulira-original", ("--config.audit.num_models=4",
                                   "--config.audit.methods=('finetune',)",
                                   "--config.audit.ulira.num_originals=1"),
      ("audit.ulira.num_originals", "raise"), command="audit"),
    R("audit-two-ulira-originals", ("--config.audit.num_models=4",
                                    "--config.audit.methods=('finetune',)",
                                    "--config.audit.ulira.num_originals=2",
                                    "--config.audit.ulira.forget_sets_per_original=1"),
      ("audit.ulira.num_originals",), command="audit"),
    R("audit-negative-plot_examples", ("--config.audit.epsilon.plot_examples=-1",),
      ("audit.epsilon.plot_examples", ">= 1"), command="audit"),
    R("audit-population-too-large-for-memory", ("--config.audit.num_models=1000000000",
                                                "--config.audit.methods=('finetune',)"),
      ("GiB", "audit.num_models", "limit", "host memory", "1000000000 models"), command="audit"),
    # Sizes bounded before any work: every size that grows with a setting is checked against
    # available memory (audit.memory_fraction) or its work limit before a mask, key or
    # population is drawn; the line names the field, the limit field with its default and a
    # value that fits.
    R("audit-ulira-originals-beyond-memory", _ulira_flags("num_originals=100000000"),
      ("audit.ulira.num_originals", "audit.memory_fraction=0.8 (default 0.8)",
       "available host memory", "audit.ulira.num_originals<="), command="audit"),
    R("audit-ulira-forget-sets-beyond-memory", _ulira_flags("forget_sets_per_original=100000000"),
      ("audit.ulira.forget_sets_per_original", "audit.memory_fraction=0.8 (default 0.8)",
       "audit.ulira.forget_sets_per_original<="), command="audit"),
    R("audit-ulira-null-beyond-its-work", _ulira_flags("null_permutations=1000000"),
      ("audit.ulira.null_permutations=1000000", "(model, example) pairs",
       "audit.ulira.max_work=2e+09 (default 2e+09)", "audit.ulira.null_permutations<="),
      command="audit"),
    R("audit-ulira-zero-max-work", _ulira_flags("max_work=0"),
      ("audit.ulira.max_work must be >= 1",), command="audit"),
    # 60,000 models in one chunk: the populations fit, the epsilon-score's 60,001^2 table
    # (tests/test_refusals.py::test_the_epsilon_table_is_refused_against_available_memory pins
    # which one is refused; here, on any machine with under 100 GiB available, one is).
    R("audit-epsilon-table-beyond-memory", ("--config.audit.num_models=60000",
                                            "--config.audit.chunk_size=60000",
                                            "--config.audit.methods=('finetune',)"),
      ("audit.num_models", "audit.memory_fraction=0.8 (default 0.8)", "available",
       "audit.num_models<="), command="audit"),
    R("audit-klom-negative-points", _klom_flags("heldout_points=-5"),
      ("audit.klom.heldout_points must be an integer >= 0",), command="audit"),
    R("audit-klom-nan-points", _klom_flags("remain_points=nan"), ("remain_points",),
      command="audit"),
    # retrain_short and unlearn.retrain_fraction.
    R("retrain-fraction-above-one", _retrain_short("--config.unlearn.retrain_fraction=1.5"),
      ("'unlearn.retrain_fraction' must be in (0, 1]",), error=ConfigError, fresh=True),
    R("retrain-fraction-negative", _retrain_short("--config.unlearn.retrain_fraction=-0.1"),
      ("'unlearn.retrain_fraction' must be in (0, 1]",), error=ConfigError, fresh=True),
    R("retrain-fraction-nan", _retrain_short("--config.unlearn.retrain_fraction=nan"),
      ("unlearn.retrain_fraction", "finite"), error=ConfigError, fresh=True),
    R("retrain-fraction-on-a-method-that-counts-epochs",
      ("--config.unlearn.method=finetune", "--config.unlearn.retrain_fraction=0.2"),
      ("unlearn.retrain_fraction=0.2 applies to methods that count their run in steps",),
      error=ConfigError, fresh=True),
    R("retrain-short-zero-temperature",
      _retrain_short("--config.unlearn.retrain_short.temperature=0.0"),
      ("unlearn.retrain_short.temperature must be in (0.0, 100.0]",), error=ConfigError,
      fresh=True),
    R("retrain-short-nan-end-fraction",
      _retrain_short("--config.unlearn.retrain_short.end_fraction=nan"),
      ("unlearn.retrain_short.end_fraction", "finite"), error=ConfigError, fresh=True),
    R("retrain-short-end-fraction-above-one",
      _retrain_short("--config.unlearn.retrain_short.end_fraction=1.5"),
      ("unlearn.retrain_short.end_fraction must be in [0.0, 1.0]",), error=ConfigError,
      fresh=True),
    R("retrain-short-steps-beyond-int32", _retrain_short("--config.unlearn.steps=1000000000000"),
      ("unlearn.steps=1000000000000", "int32", "unlearn.steps<="), error=ConfigError,
      fresh=True),
    A("audit-retrain-fraction-above-one", "retrain_short:retrain_fraction=2",
      ("audit.methods entry", "retrain_fraction", "(0, 1]")),
    A("audit-retrain-fraction-nan", "retrain_short:retrain_fraction=nan",
      ("audit.methods entry", "retrain_fraction", "finite")),
    A("audit-retrain-short-negative-temperature", "retrain_short:temperature=-1",
      ("audit.methods entry", "temperature", "(0.0, 100.0]")),
    A("audit-retrain-fraction-and-steps", "retrain_short:retrain_fraction=0.5,steps=10",
      ("audit.methods entry", "retrain_fraction=0.5", "steps=10")),
    A("audit-retrain-short-steps-beyond-int32", "retrain_short:steps=1000000000000",
      ("unlearn.steps=1000000000000", "int32")),
    # Messages (issue 25, item 8): the flag at fault, the field and the fix, in clean words.
    R("override-field-typo", ("--config.unlearn.lamda=0.1",),
      ('bad flag --config.unlearn.lamda: unknown config field unlearn.lamda; did you mean "lam"?',),
      fresh=True),
    R("override-block-typo", ("--config.unlern.lam=0.1",),
      ("bad flag --config.unlern.lam", "unknown config field unlern", 'did you mean "unlearn"?'),
      fresh=True),
    R("override-bad-value", ("--config.unlearn.lam=abc",),
      ("bad value 'abc' for config field unlearn.lam: expected a float",), fresh=True),
    R("override-bad-int", ("--config.train.epochs=two",),
      ("bad value 'two' for config field train.epochs: expected an int",), fresh=True),
    R("override-into-a-value", ("--config.unlearn.lam.x=1",),
      ("--config.unlearn.lam.x", "unlearn.lam is a value, not a block"), fresh=True),
    R("num-classes-changed", ("--config.num_classes=5",),
      ("num_classes=4", "this request has num_classes=5", "--config.num_classes=4")),
    A("audit-entry-hint-names-the-entry", "finetune", "lightweight:lam=0",
      ("audit.methods[1].lam must be in (0, 1]", "e.g. audit.methods[1].lam=0.01")),
    A("audit-entry-tol-hint-names-the-entry", "finetune:tol=0.1", ("audit.methods[0].tol=0",)),
    # Lesser (issue 25, item 9).
    R("stray-positional-argument", ("stray",), ("unexpected argument 'stray'", "takes only flags"),
      fresh=True),
    R("bn-mode-train-without-batch-norm", ("--config.unlearn.bn_mode=train",),
      ("unlearn.bn_mode='train'", "no batch norm", "--config.unlearn.bn_mode=eval"),
      error=ConfigError, fresh=True),
    A("audit-bn-mode-train-without-batch-norm", "b=finetune:bn_mode=train",
      ("no batch norm", "audit.methods[0].bn_mode=eval")),
    # Issue 25, item 3: a damaged stage is refused before the earlier results move aside.
    R("damaged-retrain-before-the-claim", (), ("corrupted", "retrain-", "delete"),
      error=CheckpointError, workdir=lambda tmp, fin: _damaged(tmp, fin, "retrain")),
    R("damaged-original-before-the-audit-claim", _audit_specs("finetune"),
      ("corrupted", "original", "delete"), command="audit",
      workdir=lambda tmp, fin: _damaged(tmp, fin, "original")),
    # Issue 25, item 10 / issue 24: the generic output temperature (unlearn.output_temperature).
    R("output-temperature-zero", ("--config.unlearn.output_temperature=0",),
      ("unlearn.output_temperature", "> 0"), error=ConfigError, fresh=True),
    R("output-temperature-too-large", ("--config.unlearn.output_temperature=1000",),
      ("unlearn.output_temperature=1000", "(0, 100]"), error=ConfigError, fresh=True),
    R("output-temperature-beside-a-methods-own",
      ("--config.unlearn.method=importance_retrain", "--config.unlearn.output_temperature=1.2"),
      ("scales its output", "unlearn.importance_retrain.temperature instead"), error=ConfigError,
      fresh=True),
    A("audit-output-temperature-nan", "t=finetune:output_temperature=nan",
      ("output_temperature", "t=finetune")),
    R("lenet5-on-images-too-small", _config_file("c.model = 'lenet5'"),
      ("lenet5", "(8, 8, 1)", "at least 12x12"), fresh=True),
    # Issue 24: matching and its teacher store, refused before any model trains.
    R("matching-teacher-store-cannot-leave-d-f-out",
      ("--config.unlearn.method=matching", "--config.unlearn.matching.teacher_keep=0.95",
       "--config.forget.size=20"),
      ("method 'matching'", "teacher store", "|D_f|", "lower forget.size",
       "unlearn.matching.teacher_keep toward 0.5"), error=ConfigError,
      fresh=True),
    R("matching-teacher-models-not-an-option",
      ("--config.unlearn.method=matching", "--config.unlearn.matching.teacher_models=7"),
      ("teacher_models", "(64, 16, 32, 128, 256)"), error=ConfigError, fresh=True),
    R("matching-in-ulira", ("--config.audit.num_models=4",
                            "--config.audit.statistics=('epsilon','ulira')",
                            "--config.audit.methods=('m=matching',)"),
      ("reads a teacher fitted", "'ulira'", "--config.audit.statistics"), command="audit"),
    R("matching-shared-anchor-in-ulira", ("--config.audit.num_models=4",
                                          "--config.audit.statistics=('epsilon','ulira')",
                                          "--config.audit.methods=('m=matching:teacher_fit=out,"
                                          "teacher_keep=0.9,anchor=teacher',)"),
      ("anchors D_r on a shared store's IN models", "U-LiRA", "anchor='logits'"),
      command="audit"),
    A("audit-matching-negative-noise", "m=matching:noise=-1", ("noise", "m=matching")),
]
del R, A


@pytest.fixture
def no_work(monkeypatch):
  """Training, saving a stage and running a population all raise: nothing may start."""
  def refuse(*args, **kwargs):
    raise AssertionError("work started before the input was refused")
  monkeypatch.setattr(train, "fit", refuse)
  monkeypatch.setattr(checkpoint, "save", refuse)
  monkeypatch.setattr(populations, "run_population", refuse)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """``(npz, workdir)``: a copy of a finished tiny run (with an earlier audit) that every
  row must leave byte-for-byte unchanged."""
  npz, src, _ = tiny.finished_run()
  workdir = tmp_path_factory.mktemp("refusals") / "finished"
  shutil.copytree(src, workdir)
  (workdir / "audit.json").write_text("{}")     # an earlier audit must not be retired
  return npz, workdir


def _one_line(code, err) -> str:
  """Asserts exit status 2 and one error line (notes aside, no traceback); returns the line."""
  assert code == 2, err
  lines = [x for x in err.strip().splitlines() if not x.startswith("jaxunlearn: note:")]
  assert len(lines) == 1, err
  assert lines[0].startswith("jaxunlearn: ") and "Traceback" not in err
  return lines[0]


def _workdirs(case, tmp, fin):
  if case.workdir is not None:
    return [case.workdir(tmp, fin)]
  return [tmp / "fresh" / "work", fin] if case.fresh else [fin]


@pytest.mark.parametrize("case", REFUSALS, ids=lambda c: c.id)
def test_refused(case, finished, tmp_path, capsys, no_work):
  npz, fin = finished
  if case.private:
    npz = Path(shutil.copy(npz, tmp_path / "tiny.npz"))
    fin = Path(shutil.copytree(fin, tmp_path / "private"))
  extra = case.extra(tmp_path, npz)
  for workdir in _workdirs(case, tmp_path, fin):
    before = tiny.tree_snapshot(workdir)
    args = tiny.cli_args(npz, workdir, "--config.eval.evaluators=()", *extra)
    code = cli.main(["jaxunlearn", case.command, *args[1:]])
    out = capsys.readouterr()
    line = _one_line(code, out.err)
    for word in case.words:
      assert word in line, (word, line)
    assert out.out == ""
    assert tiny.tree_snapshot(workdir) == before, f"{workdir} changed"


def _overrides(args):
  """``--config.a.b=v`` flags as ``tiny.config`` keyword overrides."""
  out = {}
  for a in args:
    key, _, value = a[len("--config."):].partition("=")
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      if value in ("nan", "inf"):
        value = float(value)
    out[key.replace(".", "__")] = value
  return out


# Rows that pipeline.run reaches: a run with an API error type, on the tiny config file.
API_REFUSALS = [c for c in REFUSALS if c.error is not None and c.command == "run"
                and not getattr(c.args, "config_file", False)]


@pytest.mark.parametrize("case", API_REFUSALS, ids=lambda c: c.id)
def test_api_raises_the_specific_type(case, tmp_path, finished, no_work):
  npz, fin = finished
  overrides = _overrides(case.extra(tmp_path, npz))
  dataset = overrides.pop("dataset", f"npz:{npz}")
  workdir = case.workdir(tmp_path, fin) if case.workdir else tmp_path / "work"
  before = tiny.tree_snapshot(workdir)
  cfg = tiny.config(npz, **overrides)
  cfg.dataset = dataset
  with pytest.raises(case.error) as info:
    pipeline.run(cfg, workdir)
  for word in case.words:
    assert word in str(info.value), (word, str(info.value))
  assert tiny.tree_snapshot(workdir) == before


def test_every_error_is_a_value_error_subclass():
  # Callers that predate the specific types catch ValueError; keep that working.
  for error in (ConfigError, DataError, SplitError, WorkdirError):
    assert issubclass(error, JaxUnlearnError) and issubclass(error, ValueError)


# --- Refusals that need more than a row ---------------------------------------------------------


def _private_copy(finished, tmp):
  """A copy of the finished run that a test may change: ``(npz, workdir)``."""
  npz, fin = finished
  return npz, Path(shutil.copytree(fin, tmp / "private"))


def test_an_empty_workdir_is_refused(tmp_path, capsys, no_work, monkeypatch):
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  monkeypatch.chdir(tmp_path)
  code = cli.main(["jaxunlearn", "run", f"--config={tiny.CONFIG}", "--workdir=",
                   f"--config.dataset=npz:{npz}"])
  err = capsys.readouterr().err.strip()
  assert code == 2 and "--workdir is empty" in err and len(err.splitlines()) == 1
  assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.npz"]


def test_cli_usage_errors(capsys):
  assert cli.main(["jaxunlearn", "train"]) == 2
  _one_line(2, capsys.readouterr().err)
  assert cli.main(["jaxunlearn", "run", f"--config={tiny.CONFIG}"]) == 2
  assert "--workdir is required" in _one_line(2, capsys.readouterr().err)


def test_an_old_workdir_records_its_data_hash_once(finished, tmp_path, capsys):
  npz, workdir = _private_copy(finished, tmp_path)
  run_json = workdir / "run.json"
  saved = json.loads(run_json.read_text())
  saved["original"].pop("data_hash")
  run_json.write_text(json.dumps(saved))
  args = tiny.cli_args(npz, workdir, "--config.eval.evaluators=()")
  assert cli.main(["jaxunlearn", *args]) == 0
  notes = [x for x in capsys.readouterr().err.splitlines() if "data hash" in x]
  assert len(notes) == 1 and "recorded" in notes[0]
  assert "data_hash" in json.loads(run_json.read_text())["original"]


def test_model_that_does_not_fit_the_data_is_refused_before_any_write(tmp_path, finished):
  npz, _ = finished
  cfg = tiny.config(npz, model="lenet5")
  cfg.model_kwargs = type(cfg.model_kwargs)()
  with pytest.raises(DataError, match="lenet5.*cannot take inputs of shape"):
    pipeline.run(cfg, tmp_path / "work")
  assert not (tmp_path / "work").exists()


def test_whole_numbers_are_one_rule_for_text_and_npy(tmp_path):
  text, npy = tmp_path / "idx.txt", tmp_path / "idx.npy"
  text.write_text("1.0 3")
  np.save(npy, np.asarray([1.0, 3.0]))
  np.testing.assert_array_equal(splits.read_index_file(str(text), 10), [1, 3])
  np.testing.assert_array_equal(splits.read_index_file(str(npy), 10), [1, 3])


def test_chunks_are_evened_out_instead_of_padding_a_whole_chunk():
  assert populations.balanced_chunk(65, 64) == 33
  assert populations.balanced_chunk(64, 64) == 64 and populations.balanced_chunk(10, 4) == 4
  assert populations.balanced_chunk(3, 16) == 3


def test_a_plugin_that_changes_parameter_shapes_is_refused_before_training(
    finished, tmp_path, capsys, no_work, monkeypatch):
  (tmp_path / "shape_plugin.py").write_text(
      "import jax\n"
      "from jaxunlearn import methods\n"
      "@methods.register('widen')\n"
      "class Widen(methods.Method):\n"
      "  inputs = ('x_remain', 'y_remain')\n"
      "  def make(self, env):\n"
      "    rule = methods.get('finetune')().make(env)\n"
      "    return rule._replace(finish=lambda s: jax.tree.map(lambda p: p[None], s.params))\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  npz, workdir = finished
  before = tiny.tree_snapshot(workdir)
  code = cli.main(["jaxunlearn", *tiny.cli_args(npz, workdir, "--config.eval.evaluators=()",
                                                 "--config.plugins=('shape_plugin',)",
                                                 "--config.unlearn.method=widen")])
  line = _one_line(code, capsys.readouterr().err)
  assert "widen" in line and "structure or shape" in line, line
  assert tiny.tree_snapshot(workdir) == before


SCRIPT = {
    "unknown method": (["--methods", "nope"], ["nope", "jaxunlearn methods"]),
    "seeds not integers": (["--seeds", "a,b"], ["--seeds", "integers"]),
    "empty seeds": (["--seeds", ","], ["--seeds", "empty"]),
    "empty methods": (["--methods", ","], ["--methods", "empty"]),
    "out is a file": (["--out", "FILE"], ["--out", "is a file"]),
    "bad set": (["--set", "train.nope=3"], ["train.nope", "unknown config field"]),
    "set without a value": (["--set", "train.epochs"], ["--set", "FIELD=VALUE"]),
    "bad control factors": (["--control-factors", "abc"], ["--control-factors", "numbers"]),
}


@pytest.mark.parametrize("case", list(SCRIPT), ids=list(SCRIPT))
def test_compare_methods_refuses_bad_input_in_one_line(case, tmp_path, capsys, monkeypatch,
                                                       no_work):
  from experiments import compare_methods
  extra, words = SCRIPT[case]
  (tmp_path / "FILE").write_text("x")
  extra = [str(tmp_path / "FILE") if a == "FILE" else a for a in extra]
  argv = ["compare_methods.py", "--config", str(tiny.CONFIG), "--methods", "finetune",
          "--out", str(tmp_path / "out")]
  for flag_value in zip(extra[::2], extra[1::2]):
    if flag_value[0] in argv:
      argv[argv.index(flag_value[0]) + 1] = flag_value[1]
    else:
      argv += list(flag_value)
  monkeypatch.setattr(sys, "argv", argv)
  with pytest.raises(SystemExit) as e:
    scripts.run(lambda: compare_methods.main(argv[1:]))
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1, err
  for word in words:
    assert word in err, (word, err)
  assert not (tmp_path / "out" / "work").exists()


def test_every_script_ends_bad_input_in_one_line():
  """Each script under benchmarks/ and experiments/ runs its main through scripts.run."""
  root = tiny.REPO_ROOT
  mains = [p for d in ("benchmarks", "experiments") for p in sorted((root / d).glob("*.py"))
           if 'if __name__ == "__main__":' in p.read_text()]
  assert len(mains) >= 10
  missing = [p.name for p in mains if "scripts.run(" not in p.read_text().split(
      'if __name__ == "__main__":')[-1]]
  assert not missing, missing


def test_scripts_run_passes_on_an_exit_status_and_refuses_in_one_line(capsys, monkeypatch):
  from benchmarks import determinism, scaling
  monkeypatch.setattr(sys, "argv", ["x.py"])
  with pytest.raises(SystemExit) as e:
    scripts.run(lambda: 3)
  assert e.value.code == 3
  scripts.run(lambda: 0)
  scripts.run(lambda: {"a": 1})

  def closed_pipe():
    raise BrokenPipeError(32, "Broken pipe")
  with pytest.raises(SystemExit) as e:
    scripts.run(closed_pipe)
  assert e.value.code == 1 and "Traceback" not in capsys.readouterr().err
  for main, argv, word in [(determinism.main, ["--models", "foo"], "foo"),
                           (scaling.main, ["--epochs", "0"], "--epochs"),
                           (scaling.main, ["--devices", "0"], "--devices")]:
    with pytest.raises(SystemExit) as e:
      scripts.run(lambda main=main, argv=argv: main(argv))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and word in err, err


def _world_readable(path: Path) -> bool:
  """Whether any user can reach and read ``path`` (every parent traversable)."""
  path = Path(path).resolve()
  if not path.stat().st_mode & 0o004:
    return False
  return all(p.stat().st_mode & 0o001 for p in path.parents)


@pytest.mark.skipif(not hasattr(os, "seteuid"), reason="needs POSIX user ids")
def test_unwritable_workdir_is_found_by_a_real_write(capsys):
  """As root ``os.access`` says every directory is writable; a real write does not lie."""
  if os.geteuid() == 0 and not _world_readable(tiny.CONFIG):
    pytest.skip("the checkout is not readable by 'nobody', whom this test runs the CLI as")
  import encodings.cp437  # noqa: F401  np.load's zip reader needs it; 'nobody' may not read the stdlib
  root = Path(tempfile.mkdtemp(prefix="jaxunlearn-ro-"))
  try:
    root.chmod(0o755)
    npz = tiny.write_npz(root / "tiny.npz")
    npz.chmod(0o644)
    parent = root / "locked"
    parent.mkdir(mode=0o555)
    parent.chmod(0o555)
    workdir = parent / "work"
    as_root = os.geteuid() == 0
    if as_root:
      os.seteuid(65534)  # nobody: permission bits now apply to this process
    try:
      assert os.access(parent, os.W_OK) == as_root  # access() checks the real uid
      code = cli.main(["jaxunlearn", *tiny.cli_args(npz, workdir)])
    finally:
      if as_root:
        os.seteuid(0)
    line = _one_line(code, capsys.readouterr().err)
    assert "not writable" in line and str(workdir) in line
    assert not workdir.exists()
  finally:
    (root / "locked").chmod(0o755)
    shutil.rmtree(root)


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in REFUSALS if c.id in
                                  ("unknown-override", "index-out-of-range",
                                   "workdir-parent-is-file")], ids=lambda c: c.id)
def test_the_real_program_refuses_too(case, tmp_path, finished):
  """A few rows through ``jaxunlearn`` in a subprocess: its exit status and stderr."""
  npz, fin = finished
  extra = case.extra(tmp_path, npz)
  workdir = case.workdir(tmp_path, fin) if case.workdir else tmp_path / "work"
  before = tiny.tree_snapshot(workdir)
  proc = tiny.run_cli(npz, workdir, *extra)
  line = _one_line(proc.returncode, proc.stderr)
  for word in case.words:
    assert word in line, (word, line)
  assert tiny.tree_snapshot(workdir) == before


# === IDX files (idx:DIR) and fashion_mnist ===================================================
# One block, kept together: bad, truncated or ambiguous IDX sets are refused in one line
# naming the file, by the reader here and by the command line (rows of REFUSALS).


def _bad_magic(tmp):
  files = idx_files.write_set(tmp)
  idx_files.write(files["x_train"], idx_files.make_arrays()["x_train"], magic=0x00000903)
  return files["x_train"].name


def _truncated_raw(tmp):
  files = idx_files.write_set(tmp, gz=False)
  raw = files["x_test"].read_bytes()
  files["x_test"].write_bytes(raw[:-7])
  return files["x_test"].name


def _truncated_gz(tmp):
  files = idx_files.write_set(tmp)
  raw = files["y_train"].read_bytes()
  files["y_train"].write_bytes(raw[:len(raw) // 2])
  return files["y_train"].name


def _truncated_header(tmp):
  files = idx_files.write_set(tmp)
  files["y_test"].write_bytes(gzip.compress(b"\x00\x00\x08"))
  return files["y_test"].name


def _bytes_after_the_items(tmp):
  files = idx_files.write_set(tmp, gz=False)
  files["y_train"].write_bytes(files["y_train"].read_bytes() + b"\x00")
  return files["y_train"].name


def _label_out_of_range(tmp):
  arrays = idx_files.make_arrays()
  arrays["y_test"][3] = 10   # the training labels make 10 classes
  idx_files.write_set(tmp, arrays)
  return "t10k-labels-idx1-ubyte.gz"


def _two_files_for_one_role(tmp):
  idx_files.write_set(tmp)
  idx_files.write(tmp / "train-labels-idx1-ubyte", idx_files.make_arrays()["y_train"])
  return "train-labels-idx1-ubyte.gz"


def _two_emnist_sets(tmp):
  idx_files.write_set(tmp, prefix="emnist-balanced-")
  idx_files.write_set(tmp, prefix="emnist-digits-")
  return "emnist-digits-train-images-idx3-ubyte.gz"


def _a_role_missing(tmp):
  idx_files.write_set(tmp)["x_test"].unlink()
  return "t10k-images-idx3-ubyte"


def _counts_differ(tmp):
  arrays = idx_files.make_arrays()
  arrays["y_train"] = arrays["y_train"][:-1]
  idx_files.write_set(tmp, arrays)
  return "train-labels-idx1-ubyte.gz"


def _test_images_of_another_size(tmp):
  arrays = idx_files.make_arrays()
  arrays["x_test"] = arrays["x_test"][:, :4]
  idx_files.write_set(tmp, arrays)
  return "t10k-images-idx3-ubyte.gz"


def _a_class_missing(tmp):
  arrays = idx_files.make_arrays()
  arrays["y_train"][arrays["y_train"] == 4] = 5
  idx_files.write_set(tmp, arrays)
  return "train-labels-idx1-ubyte.gz"


BAD_IDX = {
    "a bad magic number": (_bad_magic, ["magic number 0x00000903", "0x00000803"]),
    "a truncated raw file": (_truncated_raw, ["truncated", "header declares 20 images"]),
    "a truncated gzip file": (_truncated_gz, ["truncated", "gzip"]),
    "a truncated header": (_truncated_header, ["truncated", "header"]),
    "bytes after the items": (_bytes_after_the_items, ["1 byte(s) after the 40 labels"]),
    "a label out of range": (_label_out_of_range, ["label 10", "out of range"]),
    "two files for one role": (_two_files_for_one_role, ["2 train labels files",
                                                         "train-labels-idx1-ubyte,"]),
    "two EMNIST sets in one folder": (_two_emnist_sets, ["2 train images files",
                                                         "one set per folder"]),
    "a role without a file": (_a_role_missing, ["no test images file"]),
    "images and labels of different counts": (_counts_differ, ["39 labels", "40 images"]),
    "test images of another size": (_test_images_of_another_size, ["4x5", "6x5"]),
    "a class no training label has": (_a_class_missing, ["[4]", "--config.num_classes"]),
}


@pytest.mark.parametrize("case", list(BAD_IDX), ids=list(BAD_IDX))
def test_a_bad_idx_set_is_refused_naming_the_file(case, tmp_path):
  setup, words = BAD_IDX[case]
  named = setup(tmp_path)
  with pytest.raises(DataError) as info:
    data.load(f"idx:{tmp_path}")
  message = str(info.value)
  assert "\n" not in message
  assert named in message, message
  for word in words:
    assert word in message, (word, message)


def test_a_label_beyond_the_declared_classes_is_refused_naming_the_file(tmp_path):
  idx_files.write_set(tmp_path)   # labels 0..9
  with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz holds label [89]") as info:
    data.load(f"idx:{tmp_path}", num_classes=8)
  assert "\n" not in str(info.value) and "num_classes=8" in str(info.value)


@pytest.mark.parametrize("name, words", [
    ("idx:", ["idx: needs a folder"]),
    ("idx", ["needs an argument", "idx:/usr/share/datasets/fashion-mnist"]),
    ("idx:/nonexistent/idx", ["/nonexistent/idx does not exist"]),
])
def test_an_idx_name_without_a_folder_is_refused(name, words):
  with pytest.raises(DataError) as info:
    data.load(name)
  assert "\n" not in str(info.value)
  for word in words:
    assert word in str(info.value), str(info.value)


def test_fashion_mnist_without_either_source_names_both_ways(tmp_path, monkeypatch):
  monkeypatch.setattr(fashion_mnist_lib, "DEBIAN_DIR", tmp_path / "absent")
  with pytest.raises(DataError) as info:
    data.load("fashion_mnist", data_dir=str(tmp_path / "tfds"))
  message = str(info.value)
  assert "\n" not in message
  for word in ("apt-get install dataset-fashion-mnist",
               "tfds build fashion_mnist --file_format=array_record", str(tmp_path / "absent")):
    assert word in message, (word, message)


def test_a_bad_debian_copy_is_refused_not_skipped(tmp_path, monkeypatch):
  # The package's folder is there but a file is damaged: say so, do not fall through.
  named = _truncated_gz(tmp_path / "debian")
  monkeypatch.setattr(fashion_mnist_lib, "DEBIAN_DIR", tmp_path / "debian")
  with pytest.raises(DataError, match="truncated") as info:
    data.load("fashion_mnist", data_dir=str(tmp_path / "tfds"))
  assert named in str(info.value)


# Fuzzing through the API: only the documented exception type, or a valid result.

_INDEX_TOKENS = st.one_of(
    st.integers(-5, N + 5).map(str), st.integers(-(10**25), 10**25).map(str),
    st.sampled_from(["", "1.5", "abc", "0x10", "1e3", "-", ",", "٣", "nan"]))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tokens=st.lists(_INDEX_TOKENS, max_size=12),
       seps=st.sampled_from([" ", ",", "\n", ", ", "\t"]))
def test_fuzz_index_file(tmp_path, tokens, seps):
  path = tmp_path / "fuzz.txt"
  path.write_text(seps.join(tokens))
  try:
    idx = splits.read_index_file(str(path), N)
  except SplitError:
    return
  values = [int(t) for t in path.read_text().replace(",", " ").split()]
  assert idx.dtype == np.int64
  np.testing.assert_array_equal(idx, sorted(values))
  assert len(set(values)) == len(values) and all(0 <= v < N for v in values)


_INDEX_ARRAYS = st.one_of(
    hnp.arrays(st.sampled_from([np.int8, np.int64, np.uint64, np.float32, np.float64, np.bool_]),
               hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=6)),
    st.lists(st.one_of(st.integers(-(2**70), 2**70), st.floats(), st.booleans(), st.text(max_size=2),
                       st.lists(st.integers(0, 5), max_size=2)), max_size=8),
)


@settings(max_examples=150, deadline=None)
@given(idx=_INDEX_ARRAYS, n=st.integers(1, 50))
def test_fuzz_validate_indices(idx, n):
  try:
    out = splits.validate_indices(idx, n, "idx")
  except SplitError:
    return
  assert out.dtype == np.int64 and out.ndim == 1 and out.size > 0
  assert np.all((out >= 0) & (out < n)) and np.all(np.diff(out) > 0)
  flat = np.asarray(idx).ravel()
  assert out.size == flat.size
  np.testing.assert_array_equal(out, np.sort(flat.astype(np.float64)).astype(np.int64))


_ARRAY_DTYPES = st.sampled_from([np.uint8, np.int32, np.int64, np.float32, np.float64,
                                 np.bool_, np.complex64])


def _arrays(max_dims=5):
  return hnp.arrays(_ARRAY_DTYPES, hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0,
                                                     max_side=4),
                    elements=None)


@settings(max_examples=150, deadline=None)
@given(x_train=_arrays(), y_train=_arrays(2), x_test=_arrays(), y_test=_arrays(2),
       num_classes=st.one_of(st.none(), st.integers(-2, 6)))
def test_fuzz_from_arrays(x_train, y_train, x_test, y_test, num_classes):
  try:
    ds = data.from_arrays(x_train, y_train, x_test, y_test, num_classes=num_classes)
  except DataError:
    return
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  assert ds.x_train.ndim in (2, 4) and ds.x_train.shape[1:] == ds.x_test.shape[1:]
  assert ds.x_train.shape[0] == ds.y_train.shape[0] and ds.x_test.shape[0] == ds.y_test.shape[0]
  assert np.all(np.isfinite(ds.x_train)) and np.all(np.isfinite(ds.x_test))
  for y in (ds.y_train, ds.y_test):
    assert y.ndim == 1 and y.size and y.min() >= 0 and y.max() < ds.num_classes
  assert ds.num_classes >= 2


@st.composite
def _near_valid_datasets(draw):
  """Consistent shapes, so most draws reach the value checks (NaN, labels, ...)."""
  n_train, n_test = draw(st.integers(1, 5)), draw(st.integers(1, 5))
  example = draw(st.sampled_from([(3,), (2, 2), (2, 2, 1)]))
  x_dtype = draw(st.sampled_from([np.uint8, np.int32, np.float32, np.float64]))
  y_dtype = draw(st.sampled_from([np.int64, np.uint8, np.float64]))
  x = [draw(hnp.arrays(x_dtype, (n, *example))) for n in (n_train, n_test)]
  labels = {np.int64: st.integers(-1, 4), np.uint8: st.integers(0, 4),
            np.float64: st.floats(-1, 4.5) | st.sampled_from([np.nan, np.inf, 2.0])}[y_dtype]
  y = [draw(hnp.arrays(y_dtype, (n,), elements=labels)) for n in (n_train, n_test)]
  return x[0], y[0], x[1], y[1]


@settings(max_examples=150, deadline=None)
@given(arrays=_near_valid_datasets(), num_classes=st.one_of(st.none(), st.integers(1, 6)))
def test_fuzz_from_arrays_values(arrays, num_classes):
  x_train, y_train, x_test, y_test = arrays
  try:
    ds = data.from_arrays(x_train, y_train, x_test, y_test, num_classes=num_classes)
  except DataError:
    with np.errstate(over="ignore", invalid="ignore"):
      xs_finite = all(np.all(np.isfinite(np.asarray(x, np.float32))) for x in (x_train, x_test))
    ys = np.concatenate([y_train, y_test]).astype(np.float64)
    ys_ok = np.all(np.isfinite(ys)) and np.all(ys == np.round(ys)) and ys.min() >= 0
    k = num_classes if num_classes is not None else (int(ys.max()) + 1 if ys_ok else 0)
    # The documented rules: non-uint8 images lie in [0, 1]; inferred classes all occur in train.
    def scaled_ok(x):
      x = np.asarray(x)
      if x.ndim < 3 or x.dtype == np.uint8:
        return True
      with np.errstate(over="ignore", invalid="ignore"):
        f = x.astype(np.float32)
      return bool(np.all(np.isfinite(f))) and f.min() >= 0 and f.max() <= 1
    classes_ok = num_classes is not None or (ys_ok and set(range(k)) <= set(
        np.asarray(y_train, np.float64).astype(np.int64).tolist()))
    assert not (xs_finite and ys_ok and k >= 2 and ys.max() < k and classes_ok
                and scaled_ok(x_train) and scaled_ok(x_test)), "valid arrays refused"
    return
  assert np.all(np.isfinite(ds.x_train)) and np.all(np.isfinite(ds.x_test))
  np.testing.assert_array_equal(ds.y_train, y_train)
  assert ds.y_train.max() < ds.num_classes and ds.y_test.max() < ds.num_classes
  if np.asarray(x_train).dtype == np.uint8:
    np.testing.assert_allclose(ds.x_train, np.asarray(x_train).reshape(ds.x_train.shape) / 255.0,
                               rtol=1e-6)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.lists(st.one_of(st.floats(), st.integers(-3, 300), st.text(max_size=1)),
                              max_size=3), max_size=4))
def test_fuzz_from_arrays_ragged_python_lists(rows):
  try:
    data.from_arrays(rows, [0] * len(rows), rows, [1] * len(rows))
  except DataError:
    pass


# === Sizes bounded before any work (issue 25, item 2; KLOM and retrain_short, item 10) ========
# In-process: the available-memory reader, which size is refused and that the value it names
# fits, and that U-LiRA's game is drawn only after its size passed. No timings.


def _meminfo(tmp_path, monkeypatch, available_kb, total_kb):
  """``populations`` reads a ``/proc/meminfo`` of these figures."""
  path = tmp_path / "meminfo"
  path.write_text(f"MemTotal:       {total_kb} kB\nMemFree:          1024 kB\n"
                  f"MemAvailable:   {available_kb} kB\nBuffers:           10 kB\n")
  monkeypatch.setattr(populations, "MEMINFO", str(path))
  return path


def _audit_prep(tmp, **overrides):
  from jaxunlearn import auditor, request
  tmp.mkdir(parents=True, exist_ok=True)
  npz = tiny.write_npz(tmp / "tiny.npz")
  cfg = tiny.config(npz, **{"audit__methods": ("finetune",), **overrides})
  methods = auditor.method_specs(cfg)
  return request.prepare(cfg, tmp / "work", methods=methods)


def test_available_memory_is_read_from_meminfo(tmp_path, monkeypatch):
  import types
  meminfo = _meminfo(tmp_path, monkeypatch, 3 * 2**20, total_kb=64 * 2**20)   # 3 GiB of 64
  assert populations.available_host_bytes() == (3 * 2**30, "available host memory")
  assert populations.memory_limit_bytes(0.5, host=True) == (
      int(1.5 * 2**30), "3.0 GiB available host memory")
  # Without a MemAvailable line, or without the file: psutil if installed, else the total.
  total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  monkeypatch.setitem(sys.modules, "psutil", None)            # `import psutil` fails
  meminfo.write_text("MemTotal: 100 kB\nMemFree: 50 kB\n")
  assert populations.available_host_bytes() == (total, "host memory (total)")
  monkeypatch.setattr(populations, "MEMINFO", str(tmp_path / "absent"))
  assert populations.available_host_bytes() == (total, "host memory (total)")
  fake = types.SimpleNamespace(virtual_memory=lambda: types.SimpleNamespace(available=12345))
  monkeypatch.setitem(sys.modules, "psutil", fake)
  assert populations.available_host_bytes() == (12345, "available host memory")


def test_the_epsilon_table_is_refused_against_available_memory(tmp_path, monkeypatch):
  from jaxunlearn import auditor
  from jaxunlearn.audits import epsilon
  # 64 GiB available of 1 TiB: 60,000 tiny models in one chunk fit (about 6 GiB), the
  # epsilon-score's 60,001^2 rule table (about 80 GiB) does not; the total would pass it.
  _meminfo(tmp_path, monkeypatch, 64 * 2**20, total_kb=2**30)
  prep = _audit_prep(tmp_path / "a", audit__num_models=60000, audit__chunk_size=60000)
  with pytest.raises(ConfigError) as e:
    auditor.check_memory(prep, ["epsilon"])
  line = str(e.value)
  assert line.startswith("audit.num_models=60000 needs ~80.5 GiB for the epsilon-score's")
  assert "audit.memory_fraction=0.8 (default 0.8) of 64.0 GiB available host memory" in line
  fit = int(line.rsplit("set audit.num_models<=", 1)[1])
  limit = int(0.8 * 64 * 2**30)
  assert epsilon.score_bytes(fit, 12) <= limit < epsilon.score_bytes(fit + 1, 12)
  auditor.check_memory(_audit_prep(tmp_path / "b", audit__num_models=fit,
                                   audit__chunk_size=60000), ["epsilon"])


def test_sizes_are_checked_before_ulira_draws_its_game(tmp_path, monkeypatch):
  from jaxunlearn import auditor
  from jaxunlearn.audits import ulira

  def drawn(*args, **kwargs):
    raise AssertionError("U-LiRA's game was drawn before its size was checked")
  monkeypatch.setattr(ulira, "game_masks", drawn)
  for field in ("num_originals", "forget_sets_per_original"):
    prep = _audit_prep(tmp_path / field, **{f"audit__ulira__{field}": 10**8})
    with pytest.raises(ConfigError, match=rf"lower audit\.ulira\.{field} or audit\.chunk_size"):
      auditor.check(prep)
  # Within the sizes, the game is drawn (and checked) before anything is written; the statistic
  # is a plugin, so what it raises comes back as a PluginError naming it, the cause kept.
  with pytest.raises(PluginError, match="game was drawn") as e:
    auditor.check(_audit_prep(tmp_path / "small"))
  assert isinstance(e.value.__cause__, AssertionError)


def test_the_null_permutations_named_fit_the_work_limit(tmp_path):
  from jaxunlearn import auditor
  from jaxunlearn.audits import ulira
  prep = _audit_prep(tmp_path, audit__ulira__null_permutations=10**6)
  with pytest.raises(ConfigError) as e:
    auditor.check(prep)
  fit = int(str(e.value).rsplit("set audit.ulira.null_permutations<=", 1)[1])
  # tiny: 8 originals x 2 forget sets on a pool of 12 (D_r 228); two controls and one method.
  work = lambda p: ulira.game_cost(8, 2, p, n=12, n_remain=228, populations=3)[1]  # noqa: E731
  assert work(fit) <= ulira.MAX_WORK < work(fit + 1)
  assert work(100) <= ulira.MAX_WORK        # the default is far inside


def test_an_unlearning_epoch_counts_in_the_population_estimate(tmp_path, monkeypatch):
  from jaxunlearn import auditor
  # 50,000,000 steps of 4 forget + 16 remain rows and 4 metrics: 4.8 GB per member at work.
  _meminfo(tmp_path, monkeypatch, 8 * 2**20, total_kb=2**30)
  heavy = _audit_prep(tmp_path / "a", audit__num_models=4, audit__statistics=("epsilon",),
                      audit__methods=("r=retrain_short:steps=50000000",))
  with pytest.raises(ConfigError,
                     match="an unlearning epoch of 'r' holds 1200000000 row indices and step"):
    auditor.check_memory(heavy, ["epsilon"])
  light = _audit_prep(tmp_path / "b", audit__num_models=4, audit__statistics=("epsilon",),
                      audit__methods=("r=retrain_short:retrain_fraction=0.5",))
  auditor.check_memory(light, ["epsilon"])


def test_klom_sizes_grow_with_its_points_up_to_their_pools():
  from jaxunlearn import audits, plugins
  cfg = plugins.default_config()
  info = audits.AuditInfo(n_forget=12, n_remain=228, num_classes=4, labels=("a",), n_test=60)
  (need,) = audits.get("klom")().needs(cfg, info)
  assert list(need.fields) == ["audit.klom.remain_points", "audit.klom.heldout_points",
                               "audit.num_models"]
  at = lambda **v: need.cost({**need.fields, **v})[0]  # noqa: E731
  rp = "audit.klom.remain_points"
  assert at(**{rp: 0}) < at(**{rp: 100}) < at(**{rp: 228}) == at(**{rp: 10**12})
  assert at(**{"audit.num_models": 64}) > at(**{"audit.num_models": 16})
# === Messages and lesser checks (issue 25, items 8 and 9) ====================================
# Override errors name the flag at fault in clean words; --set says a bad value is a bad value;
# duplicate seeds, bn_mode on a model without batch norm, msteps beyond the epochs, a null of
# too few permutations, paths with ~ and stray arguments. Rows above cover the CLI's refusals.


@pytest.mark.parametrize("flag", ["--config.unlearn.lamda=0.1", "--config.unlern.lam=0.1",
                                  "--config.unlearn.lam=abc"])
def test_an_override_error_is_the_flags_in_clean_words(flag, tmp_path, capsys, no_work):
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  code = cli.main(["jaxunlearn", *tiny.cli_args(npz, tmp_path / "work", flag)])
  line = _one_line(code, capsys.readouterr().err)
  # No escaped repr of a KeyError, no blame on the config file, the flag named.
  assert "\\" not in line and "\\n" not in line and "Did you mean" not in line, line
  assert "config file" not in line and flag.split("=")[0].removeprefix("--config.") in line, line


def test_a_misspelt_block_in_the_config_file_is_still_the_files(tmp_path, capsys, no_work):
  # The same KeyError raised by get_config() itself is the file's, not a flag's.
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  args = _config_file("c.unlern.lam = 0.1")(tmp_path, npz)
  code = cli.main(["jaxunlearn", *tiny.cli_args(npz, tmp_path / "work", *args)])
  line = _one_line(code, capsys.readouterr().err)
  assert "bad flag" not in line and "\\" not in line, line
  assert ("cannot load the config file: its get_config() names an unknown config field "
          "'unlern' (did you mean \"unlearn\"?)") in line, line


@pytest.mark.parametrize("item, words", [
    ("unlearn.lam=abc", ["--set unlearn.lam=abc", "bad value 'abc' for config field unlearn.lam",
                         "expected a float"]),
    ("train.epochs=2.5", ["bad value 2.5 for config field train.epochs", "expected an int"]),
    ("unlearn.lamda=0.1", ["unknown config field 'unlearn.lamda'", 'did you mean "lam"?']),
    ("unlern.lam=0.1", ["unknown config field 'unlern'", 'did you mean "unlearn"?']),
    ("unlearn.lam.x=1", ["unlearn.lam is a value, not a block"]),
])
def test_set_says_a_bad_value_is_a_bad_value(item, words):
  from experiments import common
  with pytest.raises(ConfigError) as info:
    common.load_config(str(tiny.CONFIG), [item])
  for word in words:
    assert word in str(info.value), (word, str(info.value))
  if any("bad value" in w for w in words):
    assert "unknown" not in str(info.value), str(info.value)


def test_set_bad_value_through_a_script_is_one_line(tmp_path, capsys, monkeypatch, no_work):
  from experiments import distributions
  monkeypatch.setattr(sys, "argv", ["distributions.py"])
  with pytest.raises(SystemExit) as e:
    scripts.run(lambda: distributions.main(["--config", str(tiny.CONFIG), "--set",
                                            "unlearn.lam=abc", "--out", str(tmp_path / "o")]))
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "bad value 'abc'" in err and "unknown" not in err, err


def test_seeds_named_twice_are_refused(tmp_path, capsys, no_work):
  from experiments import lambda_sweep
  with pytest.raises(SystemExit) as e:
    lambda_sweep.main(["--seeds", "0,1,0", "--out", str(tmp_path / "o")])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "--seeds names 0 twice" in err and "0,1" in err, err
  assert not (tmp_path / "o").exists()
  assert scripts.int_list("--ns", unique=False)("1,1") == [1, 1]


def test_msteps_beyond_the_epochs_is_one_note(tmp_path, capsys):
  from jaxunlearn import request
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  for epochs, noted in ((1, True), (3, False)):
    cfg = tiny.config(npz, unlearn__method="scrub", unlearn__epochs=epochs)
    request.prepare(cfg, tmp_path / "work")          # validation only: nothing is written
    notes = [x for x in capsys.readouterr().err.splitlines() if "msteps" in x]
    assert len(notes) == noted, notes
    if noted:
      assert notes[0].startswith("jaxunlearn: note: scrub: unlearn.scrub.msteps=3 is more "
                                 "than unlearn.epochs=1"), notes
  assert not (tmp_path / "work").exists()


def test_a_null_of_few_permutations_is_marked_and_noted(tmp_path, capsys):
  from jaxunlearn import audits
  from jaxunlearn.audits import ulira
  rng = np.random.default_rng(0)
  in_mask = rng.random((12, 10)) < 0.5
  groups = np.arange(12) // 2
  phi = rng.normal(size=in_mask.shape)
  one = ulira.permutation_null(phi, in_mask, ~in_mask, groups=groups, permutations=1)
  many = ulira.permutation_null(phi, in_mask, ~in_mask, groups=groups, permutations=100)
  assert "1 permutation (fewer than 100)" in one["null_q99_warning"]
  assert "null_q99_warning" not in many
  row = {"balanced_acc": 0.5, "auc": 0.5, "accuracy_at_zero": 0.5, "tpr_at_1pct_fpr": 0.0,
         "tpr_at_01pct_fpr": 0.0, "per_example_accuracy_median": 0.5,
         "per_example_accuracy_q90": 0.5}
  text = ulira.ULiRA().report({"few": {**row, **one}, "enough": {**row, **many}})
  few, enough = (next(x for x in text.splitlines() if x.startswith(f"| {n} "))
                 for n in ("few", "enough"))
  assert few.count("(!)") == 2 and "(!)" not in enough
  assert "(!) Warning: the null's q99 comes from 1 permutation" in text
  # One note before any work, from the statistic's own check.
  cfg = tiny.config(tmp_path / "tiny.npz", audit__ulira__null_permutations=1)
  ulira.ULiRA().validate(cfg, audits.AuditInfo(n_forget=40, n_remain=150, num_classes=4,
                                               labels=("finetune",)))
  notes = capsys.readouterr().err.strip().splitlines()
  assert len(notes) == 1 and notes[0].startswith("jaxunlearn: note: U-LiRA: the null's q99")


def test_paths_with_a_tilde_are_the_home_folders(tmp_path, capsys, monkeypatch, no_work):
  home, cwd = tmp_path / "home", tmp_path / "cwd"
  home.mkdir()
  cwd.mkdir()
  monkeypatch.setenv("HOME", str(home))
  monkeypatch.chdir(cwd)
  tiny.write_npz(home / "tiny.npz")
  _file(home / "afile")
  # The data load from ~/tiny.npz, then the work dir ~/afile is found to be a file.
  code = cli.main(["jaxunlearn", "run", f"--config={tiny.CONFIG}", "--workdir=~/afile",
                   "--config.dataset=npz:~/tiny.npz"])
  line = _one_line(code, capsys.readouterr().err)
  assert f"work directory {home / 'afile'} is a file" in line, line
  code = cli.main(["jaxunlearn", "run", f"--config={tiny.CONFIG}", "--workdir=~/work",
                   "--config.dataset=npz:~/tiny.npz", "--config.forget.mode=indices",
                   "--config.forget.index_file=~/none.txt"])
  line = _one_line(code, capsys.readouterr().err)
  assert str(home / "none.txt") in line and "does not exist" in line, line
  assert list(cwd.iterdir()) == []                   # no folder literally named ~
  assert data.parse_name("npz:~/d.npz") == ("npz", str(home / "d.npz"))
  assert scripts.out_dir()("~/out") == home / "out"


def test_stray_arguments_are_refused_before_any_work(tmp_path, capsys, no_work):
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  # `--workdir DIR extra` and a value meant for a flag written apart from it.
  for extra in (["extra"], ["--config.unlearn.lam", "0.1", "0.2"]):
    code = cli.main(["jaxunlearn", *tiny.cli_args(npz, tmp_path / "work", *extra)])
    line = _one_line(code, capsys.readouterr().err)
    assert "unexpected argument" in line and "takes only flags" in line, line
  assert not (tmp_path / "work").exists()


def test_compare_methods_refuses_when_no_method_can_run(tmp_path, no_work):
  from experiments import compare_methods
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  with pytest.raises(ConfigError, match="no method of --methods can run on this model.*ct"):
    compare_methods.main(["--config", str(tiny.CONFIG), "--methods", "ct", "--no-bad-control",
                          "--out", str(tmp_path / "o"), "--set", f"dataset=npz:{npz}"])
  assert not (tmp_path / "o" / "work").exists()


@pytest.mark.slow
def test_compare_methods_gives_a_method_that_cannot_run_its_own_row(tmp_path):
  import csv
  from experiments import compare_methods
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  out = tmp_path / "out"
  res = compare_methods.main(["--config", str(tiny.CONFIG), "--methods", "ct,finetune",
                              "--no-bad-control", "--out", str(out), "--set",
                              f"dataset=npz:{npz}", "--set", "eval.evaluators=('accuracy',)"])
  rows = {r[0]: r for r in csv.reader((out / "compare_methods.csv").open())}
  assert rows["ct"][1] == "not applicable" and rows["finetune"][1] not in ("", "n/a")
  assert "convolution" in res["stats"]["ct"]["not_applicable"]
  assert [r["label"] for r in res["runs"]] == ["ct", "finetune"]
# === Issue 25, items 3 and 6: good results are never retired; a full disk is one line ===========
# A refusal leaves the work dir as it was (the damaged-* rows of REFUSALS); a failure during work
# (a full disk: WriteError, exit 1) puts the earlier results back, and what it half-wrote is
# never taken for a finished stage.


def _read_only_mount(folder: Path):
  """``folder`` made read-only for this process: by its mode, or, as root (whom modes do not
  stop), by a read-only bind mount of it onto itself. Skips, saying why, where neither works."""
  if os.geteuid() != 0:
    folder.chmod(0o555)
    stack = contextlib.ExitStack()
    stack.callback(folder.chmod, 0o755)
    return stack
  bind = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True,
                        text=True)
  if bind.returncode != 0:
    pytest.skip(f"cannot bind-mount {folder} read-only: {bind.stderr.strip() or bind.returncode}")
  stack = contextlib.ExitStack()
  stack.callback(subprocess.run, ["umount", str(folder)], check=True)
  ro = subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True,
                      text=True)
  if ro.returncode != 0:
    stack.close()
    pytest.skip(f"cannot remount {folder} read-only: {ro.stderr.strip()}")
  return stack


def test_an_unwritable_checkpoints_folder_is_refused_before_any_work(finished, tmp_path, capsys,
                                                                    no_work):
  npz, workdir = _private_copy(finished, tmp_path)
  shutil.rmtree(tiny.stage_dirs(workdir)["unlearned"])   # a stage the run would have to save
  folder = workdir / "checkpoints"
  before = tiny.tree_snapshot(workdir)
  with _read_only_mount(folder):
    code = cli.main(["jaxunlearn", *tiny.cli_args(npz, workdir)])
  line = _one_line(code, capsys.readouterr().err)
  assert str(folder) in line and "not writable" in line and "permissions" in line, line
  assert "only arrays" not in line
  assert tiny.tree_snapshot(workdir) == before


def _full_disk_at(monkeypatch, where: str, stage: str = "unlearned") -> None:
  """Makes the write at ``where`` meet a full disk, after writing part of its file."""
  def full(path):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
  if where == "checkpoint":
    real = checkpoint._orbax_save

    def orbax_save(path, state, metadata):
      if path.name.startswith(stage):
        real(path, state, metadata)    # Orbax's files are all there; the marker is not
        raise full(path / "0")
      return real(path, state, metadata)
    monkeypatch.setattr(checkpoint, "_orbax_save", orbax_save)
  elif where == "marker":
    real_marker = checkpoint._write_marker

    def write_marker(path, content):
      if path.name.startswith(stage):
        real_atomic(path / checkpoint.MARKER_NAME, half)
      return real_marker(path, content)
    monkeypatch.setattr(checkpoint, "_write_marker", write_marker)
  real_atomic = workdir_lib.atomic_write

  def half(f):
    f.write(b"{half a file")
    raise full(f.name)

  if where == "results.md":
    def atomic_write(path, content, **kwargs):
      return real_atomic(path, half if Path(path).name == where else content, **kwargs)
    monkeypatch.setattr(workdir_lib, "atomic_write", atomic_write)


def _full_disk_run(finished, tmp_path, capsys, monkeypatch, where, *extra):
  """A run that meets a full disk at ``where`` (for a stage's write, the unlearned stage is
  removed first, so it has to be saved):
  ``(npz, workdir, unlearned stage dir, earlier results, its one error line)``."""
  npz, workdir = _private_copy(finished, tmp_path)
  unlearned = tiny.stage_dirs(workdir)["unlearned"]
  if where in ("checkpoint", "marker"):
    shutil.rmtree(unlearned)
  old = {name: (workdir / name).read_bytes() for name in ("results.json", "results.md")}
  _full_disk_at(monkeypatch, where)
  code = cli.main(["jaxunlearn", *tiny.cli_args(npz, workdir, *extra)])
  err = capsys.readouterr().err
  lines = [x for x in err.strip().splitlines() if not x.startswith("jaxunlearn: note:")]
  assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
  return npz, workdir, unlearned, old, lines[0]


@pytest.mark.parametrize("where", ["checkpoint", "marker", "results.md"])
def test_a_full_disk_is_one_line_and_retires_nothing(finished, tmp_path, capsys, monkeypatch,
                                                     where):
  """ENOSPC where a stage's files, its marker or results.md are written: one line naming the
  path and the space needed, exit 1; the earlier results are back, and nothing half-written
  is left, or looks finished."""
  _, workdir, unlearned, old, line = _full_disk_run(
      finished, tmp_path, capsys, monkeypatch, where, "--config.eval.evaluators=('accuracy',)")
  target = workdir / "results.md" if where == "results.md" else unlearned
  assert line.startswith("jaxunlearn: error: cannot write ") and str(target) in line, line
  assert "no space left" in line and "it needs about" in line and "free there" in line, line
  # The earlier results are back, whole; no temporary or previous file is left.
  assert {name: (workdir / name).read_bytes() for name in old} == old
  leftovers = [p.name for p in workdir.rglob("*") if ".tmp" in p.name or ".previous." in p.name]
  assert leftovers == []
  if where != "results.md":
    # Half-written: never taken for finished (a rerun saves it anew), and its space is freed.
    assert not checkpoint.exists(unlearned) and not unlearned.exists()


@pytest.mark.slow
def test_after_a_full_disk_a_rerun_ends_with_the_uninterrupted_figures(finished, tmp_path,
                                                                       capsys, monkeypatch):
  npz, workdir, unlearned, old, _ = _full_disk_run(finished, tmp_path, capsys, monkeypatch,
                                                   "checkpoint")
  monkeypatch.undo()
  pipeline.run(tiny.config(npz), workdir)
  assert checkpoint.exists(unlearned)
  rerun = json.loads((workdir / "results.json").read_text())
  assert tiny.figures(rerun) == tiny.figures(json.loads(old["results.json"]))


def test_a_write_error_names_the_space_needed_and_free(tmp_path):
  error = workdir_lib.write_error(tmp_path / "x.json", OSError(errno.EDQUOT, "quota"), 3 * 2**20)
  assert isinstance(error, WriteError) and error.exit_status == 1
  free = workdir_lib.free_bytes(tmp_path)
  assert str(tmp_path / "x.json") in str(error) and "disk quota" in str(error)
  assert "3.0 MiB" in str(error) and workdir_lib._size(free) + " free there" in str(error)
  # TensorStore (under Orbax) names the OS error in its message only.
  wrapped = ValueError("RESOURCE_EXHAUSTED: ... No space left on device [os_error_code='28']")
  assert workdir_lib.error_number(RuntimeError("save failed").with_traceback(None)) is None
  assert workdir_lib.error_number(wrapped) == errno.ENOSPC
  denied = workdir_lib.write_error(tmp_path, PermissionError(errno.EACCES, "denied"))
  assert "Permission denied" in str(denied) and "permissions" in str(denied)


@contextlib.contextmanager
def _tmpfs(folder: Path, size: str):
  """A tmpfs of ``size`` mounted on ``folder``; skips, printing why, where mounting is refused."""
  folder.mkdir(parents=True)
  mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                         capture_output=True, text=True)
  if mount.returncode != 0:
    reason = f"cannot mount a tmpfs on {folder}: {mount.stderr.strip() or mount.returncode}"
    print(reason)
    pytest.skip(reason)
  try:
    yield folder
  finally:
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
def test_a_real_full_disk_is_one_line_and_a_rerun_with_space_finishes(finished, tmp_path, capfd):
  """On a small tmpfs, filled up to a few KiB: the unlearned stage cannot be saved. Orbax's
  own error logs stay quiet, the line names the stage and the space, and once space is freed
  the rerun ends with the figures of the uninterrupted run."""
  npz, fin = finished
  with _tmpfs(tmp_path / "disk", "2m") as disk:
    workdir = Path(shutil.copytree(fin, disk / "work"))
    unlearned = tiny.stage_dirs(workdir)["unlearned"]
    shutil.rmtree(unlearned)
    old = (workdir / "results.json").read_bytes()
    filler = disk / "filler"
    filler.write_bytes(b"\0" * (shutil.disk_usage(disk).free - 16 * 1024))
    capfd.readouterr()
    code = cli.main(["jaxunlearn", *tiny.cli_args(npz, workdir)])
    err = capfd.readouterr().err
    lines = [x for x in err.strip().splitlines() if not x.startswith("jaxunlearn: note:")]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err   # Orbax kept quiet
    assert str(unlearned) in lines[0] and "no space left" in lines[0], lines[0]
    assert "it needs about" in lines[0] and "free there" in lines[0]
    assert (workdir / "results.json").read_bytes() == old
    assert not checkpoint.exists(unlearned)
    filler.unlink()
    assert cli.main(["jaxunlearn", *tiny.cli_args(npz, workdir)]) == 0
    assert tiny.figures(json.loads((workdir / "results.json").read_text())) == \
        tiny.figures(json.loads(old))


def test_every_writer_meets_a_real_full_disk_with_one_write_error(tmp_path):
  """On a tiny full tmpfs (no pipeline): a checkpoint, a results file, a population's phi and a
  plot each raise WriteError naming the path and leave nothing half-written behind."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  with _tmpfs(tmp_path / "disk", "256k") as disk:
    earlier = disk / "results.json"
    earlier.write_text('{"earlier": true}')
    (disk / "filler").write_bytes(b"\0" * shutil.disk_usage(disk).free)
    fig = plt.figure()
    try:
      writes = {
          "checkpoint": (disk / "stage", lambda: checkpoint.save(
              disk / "stage", {"w": np.arange(50_000, dtype=np.float32)})),
          "results.json": (earlier, lambda: workdir_lib.atomic_write(earlier, "x" * 50_000)),
          "phi": (disk / "phi" / "pop.npy", lambda: populations.save_phi(
              disk / "phi", "pop", np.ones((4, 5000), np.float32))),
          "plot": (disk / "plot.png", lambda: workdir_lib.save_figure(fig, disk / "plot.png")),
      }
      (disk / "phi").mkdir()
      for name, (path, write) in writes.items():
        with pytest.raises(WriteError) as info:
          write()
        message = str(info.value)
        assert str(path) in message and "no space left" in message, (name, message)
        assert len(message.splitlines()) == 1
    finally:
      plt.close(fig)
    assert earlier.read_text() == '{"earlier": true}'     # the earlier file, whole
    left = sorted(p.relative_to(disk).as_posix() for p in disk.rglob("*"))
    assert left == ["filler", "phi", "results.json"], left   # no temporary or partial file


def test_an_interrupted_run_puts_the_earlier_results_back(finished, tmp_path, capsys,
                                                          monkeypatch):
  npz, workdir = _private_copy(finished, tmp_path)
  old = {name: (workdir / name).read_bytes() for name in ("results.json", "results.md")}

  def interrupt(*args, **kwargs):
    raise KeyboardInterrupt
  monkeypatch.setattr(pipeline, "eval_inputs", interrupt)   # after every stage is restored
  assert cli.main(["jaxunlearn", *tiny.cli_args(npz, workdir)]) == 130
  assert "interrupted" in capsys.readouterr().err
  assert {name: (workdir / name).read_bytes() for name in old} == old
  assert not list(workdir.glob("*.previous.*"))
# plugin errors and one-liners (issue 25.4, 25.5, 25.7) ========================================
# A plugin that raises is a PluginError naming it (one line and exit 1 on the command line, the
# traceback with --debug); a config file that returns no usable config, the scripts' own bad
# input and a model too big for its images are one line before any work; an interrupt ends with
# exit 130 and the line to resume.


@pytest.fixture
def registered():
  """``registered(registry_module, name, plugin)``: registers a plugin for one test only."""
  from jaxunlearn import audits, evaluators, methods, models, transforms
  registries = {"method": (methods, methods.base._REGISTRY),
                "evaluator": (evaluators, evaluators.base._REGISTRY),
                "statistic": (audits, audits.base._REGISTRY), "dataset": (data, data._REGISTRY),
                "model": (models, models._REGISTRY),
                "transform": (transforms, transforms._REGISTRY)}
  added = []

  def register(kind, name, plugin):
    package, reg = registries[kind]
    package.register(name)(plugin)
    added.append((reg, name))
    return plugin

  yield register
  for reg, name in added:
    reg._plugins.pop(name, None)


class _Boom(RuntimeError):
  pass


def _boom(*args, **kwargs):
  raise _Boom("the plugin's own bug")


def _plugin_case(kind, register):
  """Registers a plugin of ``kind`` that raises, and returns the config overrides using it."""
  import flax.linen as nn
  from jaxunlearn import audits, evaluators, methods, transforms
  if kind == "method":
    register("method", "boom_method", type("BoomMethod", (methods.get("finetune"),),
                                           {"loss": _boom}))
    return {"unlearn__method": "boom_method"}
  if kind == "evaluator":
    register("evaluator", "boom_eval", type("BoomEvaluator", (evaluators.Evaluator,),
                                            {"evaluate": _boom}))
    return {"eval__evaluators": ("boom_eval",)}
  if kind == "statistic":
    register("statistic", "boom_stat", type("BoomStatistic", (audits.Statistic,),
                                            {"run": _boom}))
    return {"audit__statistics": ("boom_stat",), "audit__methods": ("finetune",),
            "audit__num_models": 2}
  if kind == "dataset":
    register("dataset", "boom_data", lambda source: _boom())
    return {"dataset": "boom_data"}
  if kind == "model":
    class BoomModel(nn.Module):
      num_classes: int

      @nn.compact
      def __call__(self, x, train=False):
        _boom()
    register("model", "boom_model", BoomModel)
    return {"model": "boom_model", "model_kwargs": type(tiny.config("x").model_kwargs)()}
  assert kind == "transform"
  register("transform", "boom_transform", type(
      "BoomTransform", (transforms.Transform,), {"enabled": lambda self, cfg: True,
                                                 "apply": _boom}))
  return {}


# (kind, what runs it, the name the error gives); the evaluator and the statistic fail during
# work, after the finished run's stages are restored, the others before any.
PLUGIN_KINDS = [("method", "run", "unlearning method 'boom_method'"),
                ("evaluator", "run", "evaluator 'boom_eval'"),
                ("statistic", "audit", "audit statistic 'boom_stat'"),
                ("dataset", "run", "dataset 'boom_data'"),
                ("model", "run", "model 'boom_model'"),
                ("transform", "run", "data transform 'boom_transform'")]


@pytest.mark.parametrize("kind,command,named", PLUGIN_KINDS, ids=[k[0] for k in PLUGIN_KINDS])
def test_a_plugin_that_raises_is_a_plugin_error_naming_it(kind, command, named, registered,
                                                          finished, tmp_path, monkeypatch):
  from jaxunlearn import auditor
  from jaxunlearn.errors import PluginError
  npz, workdir = _private_copy(finished, tmp_path)
  overrides = _plugin_case(kind, registered)
  dataset = overrides.pop("dataset", None)
  cfg = tiny.config(npz, **overrides)
  if dataset:
    cfg.dataset = dataset
  # Nothing is trained: the plugin fails before any work, or after the restored stages.
  def refuse(*args, **kwargs):
    raise AssertionError("trained")
  monkeypatch.setattr(train, "fit", refuse)
  monkeypatch.setattr(populations, "run_population", refuse)
  run = auditor.run_audit if command == "audit" else pipeline.run
  with pytest.raises(PluginError) as info:
    run(cfg, workdir)
  e = info.value
  assert isinstance(e, JaxUnlearnError)
  assert isinstance(e.__cause__, _Boom) and str(e.__cause__) == "the plugin's own bug"
  text = str(e)
  assert named in text and f"({__name__}." in text and "_Boom" in text, text
  assert "the plugin's own bug" in text and len(text.splitlines()) == 1
  assert e.where.startswith(f"{__name__}.")


def test_a_refusal_raised_by_a_plugin_passes_unchanged(registered, finished, tmp_path,
                                                       no_work):
  from jaxunlearn import methods
  def validate(self, hp):
    raise ConfigError("unlearn.careful.level must be > 0; set it with --config...")
  registered("method", "careful", type("Careful", (methods.get("finetune"),),
                                       {"validate": validate}))
  npz, _ = finished
  with pytest.raises(ConfigError, match="unlearn.careful.level") as info:
    pipeline.run(tiny.config(npz, unlearn__method="careful"), tmp_path / "work")
  assert type(info.value) is ConfigError


def _buggy_plugin(tmp_path, monkeypatch):
  (tmp_path / "buggy_plugin.py").write_text(
      "from jaxunlearn import methods\n"
      "@methods.register('buggy')\n"
      "class Buggy(methods.Method):\n"
      "  inputs = ('x_remain', 'y_remain')\n"
      "  def loss(self, params, apply_fn, batch, hp, extra):\n"
      "    raise RuntimeError('a bug in the plugin')\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  return ("--config.plugins=('buggy_plugin',)", "--config.unlearn.method=buggy")


def test_a_bug_in_a_plugin_is_one_line_and_its_traceback_with_debug(finished, tmp_path,
                                                                   monkeypatch, capsys):
  extra = _buggy_plugin(tmp_path, monkeypatch)
  npz, workdir = _private_copy(finished, tmp_path)
  before = tiny.tree_snapshot(workdir)
  args = tiny.cli_args(npz, workdir, *extra)
  assert cli.main(["jaxunlearn", *args]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "Traceback" not in err, err
  for word in ("unlearning method 'buggy'", "buggy_plugin.Buggy", "RuntimeError",
               "a bug in the plugin", "--debug"):
    assert word in err, (word, err)
  assert cli.main(["jaxunlearn", *args, "--debug"]) == 1
  err = capsys.readouterr().err
  assert "Traceback" in err and "buggy_plugin.py" in err and "raise RuntimeError" in err
  assert err.strip().splitlines()[-1].startswith("jaxunlearn: error: unlearning method 'buggy'")
  assert tiny.tree_snapshot(workdir) == before      # found by the trace, before any work


def test_a_plugin_failing_during_work_exits_1_in_one_line(registered, finished, tmp_path,
                                                          capsys):
  from jaxunlearn import evaluators
  registered("evaluator", "boom_eval", type("BoomEvaluator", (evaluators.Evaluator,),
                                            {"evaluate": _boom}))
  npz, workdir = _private_copy(finished, tmp_path)
  code = cli.main(["jaxunlearn", *tiny.cli_args(npz, workdir,
                                                "--config.eval.evaluators=('boom_eval',)")])
  err = capsys.readouterr().err.strip()
  assert code == 1 and len(err.splitlines()) == 1, err
  assert "evaluator 'boom_eval'" in err and "_Boom: the plugin's own bug" in err


def test_scripts_end_a_plugin_error_in_one_line_and_show_it_with_debug(capsys, monkeypatch):
  from jaxunlearn.errors import PluginError

  def main(argv=None):
    try:
      _boom()
    except _Boom as e:
      raise PluginError("evaluator 'x' (m.X) failed in evaluate: _Boom: bug") from e
  monkeypatch.setattr(sys, "argv", ["script.py"])
  with pytest.raises(SystemExit) as e:
    scripts.run(main)
  err = capsys.readouterr().err.strip()
  assert e.value.code == 1 and len(err.splitlines()) == 1 and "evaluator 'x'" in err, err
  with pytest.raises(SystemExit) as e:
    scripts.run(main, ["--debug"])
  err = capsys.readouterr().err
  assert e.value.code == 1 and "Traceback" in err and "_boom" in err


# --- config files that return no usable config (25.5) ---


def _config_returning(body: str):
  def setup(tmp):
    path = tmp / "odd_config.py"
    path.write_text(f"import sys\nimport ml_collections\n\n\ndef get_config():\n  {body}\n")
    return path
  return setup


CONFIG_RESULTS = {
    "a dict": ("return {'dataset': 'mnist5k'}", ("returned a dict", "configs/quick.py")),
    "None": ("return None", ("returned None", "configs/quick.py")),
    "missing core blocks": ("c = ml_collections.ConfigDict()\n  c.dataset = 'mnist5k'\n"
                            "  c.model = 'mlp'\n  return c",
                            ("lacks the core blocks", "forget", "unlearn", "configs/quick.py")),
    "sys.exit()": ("sys.exit()", ("sys.exit(None)", "get_config() must return")),
    "sys.exit(0)": ("sys.exit(0)", ("sys.exit(0)",)),
}


@pytest.mark.parametrize("case", list(CONFIG_RESULTS), ids=list(CONFIG_RESULTS))
@pytest.mark.parametrize("command", ["run", "config"])
def test_a_config_file_without_a_usable_config_is_one_line(case, command, tmp_path, capsys,
                                                           no_work):
  body, words = CONFIG_RESULTS[case]
  path = _config_returning(body)(tmp_path)
  argv = ["jaxunlearn", command, f"--config={path}"]
  if command == "run":
    argv.append(f"--workdir={tmp_path / 'work'}")
  line = _one_line(cli.main(argv), capsys.readouterr().err)
  for word in words:
    assert word in line, (word, line)
  assert not (tmp_path / "work").exists()


def test_the_api_names_the_missing_core_blocks():
  import ml_collections
  from jaxunlearn import plugins
  cfg = ml_collections.ConfigDict({"dataset": "mnist5k", "model": "mlp"})
  with pytest.raises(ConfigError, match="lacks the core blocks .*forget.*default_config"):
    plugins.check_config(cfg)
  cfg = plugins.default_config()
  del cfg.train["epochs"]
  with pytest.raises(ConfigError, match="lacks the core field train.epochs"):
    plugins.check_config(cfg)


@pytest.mark.parametrize("case", ["a dict", "sys.exit(0)", "missing core blocks"])
def test_the_scripts_refuse_a_config_without_a_usable_config(case, tmp_path, capsys,
                                                            monkeypatch, no_work):
  from experiments import compare_methods
  path = _config_returning(CONFIG_RESULTS[case][0])(tmp_path)
  monkeypatch.setattr(sys, "argv", ["compare_methods.py"])
  with pytest.raises(SystemExit) as e:
    scripts.run(compare_methods.main, ["--config", str(path), "--methods", "finetune",
                                       "--out", str(tmp_path / "out")])
  err = capsys.readouterr().err.strip()
  assert e.value.code == 2 and len(err.splitlines()) == 1, err
  assert CONFIG_RESULTS[case][1][0] in err


# --- the scripts' own bad input (25.5) ---


def _script_error(main, argv, capsys, monkeypatch) -> str:
  monkeypatch.setattr(sys, "argv", ["script.py"])
  with pytest.raises(SystemExit) as e:
    scripts.run(main, argv)
  err = capsys.readouterr().err.strip()
  assert e.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
  return err


def test_compare_methods_audit_without_a_retrain_statistic_is_refused_before_any_work(
    tmp_path, capsys, monkeypatch, no_work):
  from experiments import compare_methods
  err = _script_error(compare_methods.main,
                      ["--config", str(tiny.CONFIG), "--methods", "finetune", "--audit",
                       "--set", "audit.statistics=()", "--out", str(tmp_path / "out")],
                      capsys, monkeypatch)
  assert "audit.statistics=()" in err and "epsilon" in err
  assert not (tmp_path / "out" / "work").exists()


@pytest.mark.parametrize("settings,words", [("missing.py", ("--settings", "is not a file")),
                                            ("broken.py", ("cannot load the settings file",)),
                                            ("no_apply.py", ("defines no apply",))])
def test_compare_methods_refuses_a_bad_settings_file(settings, words, tmp_path, capsys,
                                                     monkeypatch, no_work):
  from experiments import compare_methods
  (tmp_path / "broken.py").write_text("def apply(c, method:\n")
  (tmp_path / "no_apply.py").write_text("X = 1\n")
  err = _script_error(compare_methods.main,
                      ["--config", str(tiny.CONFIG), "--methods", "finetune", "--settings",
                       str(tmp_path / settings), "--out", str(tmp_path / "out")],
                      capsys, monkeypatch)
  for word in words:
    assert word in err, (word, err)


def test_speedup_refuses_an_out_file_before_any_work(tmp_path, capsys, monkeypatch):
  from benchmarks import speedup
  monkeypatch.setattr(speedup, "measure", lambda args: pytest.fail("measured"))
  (tmp_path / "FILE").write_text("x")
  err = _script_error(speedup.main, ["--out", str(tmp_path / "FILE")], capsys, monkeypatch)
  assert "--out" in err and "is a file" in err


def _script_mains():
  root = tiny.REPO_ROOT
  return [p for d in ("benchmarks", "experiments") for p in sorted((root / d).glob("*.py"))
          if 'if __name__ == "__main__":' in p.read_text()]


@pytest.mark.parametrize("path", _script_mains(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_script_takes_debug_and_refuses_a_bad_flag_in_one_line(path, tmp_path, capsys,
                                                                     monkeypatch):
  import importlib
  module = importlib.import_module(f"{path.parent.name}.{path.stem}")
  err = _script_error(module.main, ["--debug", "--out", str(tmp_path / "out"),
                                    "--no-such-flag"], capsys, monkeypatch)
  assert "unrecognized arguments" in err and "--no-such-flag" in err and "--debug" not in err


def test_lenet5_on_images_too_small_names_the_minimum_size():
  import jax
  import jax.numpy as jnp
  from jaxunlearn import models
  model = models.get_model("lenet5", 10)
  for size in (8, 11):
    with pytest.raises(DataError, match=rf"lenet5.*\({size}, {size}, 1\).*at least 12x12"):
      jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, size, size, 1))), jax.random.key(0))
  shapes = jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, 12, 12, 1))), jax.random.key(0))
  assert shapes["params"]["Dense_0"]["kernel"].shape == (16, 120)


# --- interrupts (25.7) ---


@pytest.fixture
def python_sigint():
  """SIGINT handled as in a program Python runs (pytest or a job control shell may differ)."""
  import signal
  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  yield
  signal.signal(signal.SIGINT, previous)


def test_an_interrupt_during_an_audit_exits_130_with_the_resume_line(finished, tmp_path,
                                                                     capsys, monkeypatch):
  from jaxunlearn import workdir as workdir_lib
  npz, workdir = _private_copy(finished, tmp_path)

  def interrupted(*args, **kwargs):      # the pause point before a population's first chunk
    raise KeyboardInterrupt
  monkeypatch.setattr(populations, "run_population", interrupted)
  code = cli.main(["jaxunlearn", "audit", f"--config={tiny.CONFIG}", f"--workdir={workdir}",
                   f"--config.dataset=npz:{npz}", "--config.audit.num_models=2",
                   "--config.audit.methods=('finetune',)",
                   "--config.audit.statistics=('epsilon',)"])
  err = capsys.readouterr().err.strip()
  assert code == 130 and err.splitlines()[-1].endswith("rerun to resume"), err
  assert "Traceback" not in err
  with workdir_lib.Lock(workdir):        # released: a rerun can take it
    pass


def test_an_interrupt_ends_the_process_at_once_with_130(capsys, monkeypatch, python_sigint):
  """The command line and the scripts end with exit_now(130): no interpreter shutdown while
  JAX or Orbax threads may still run (a segmentation fault in 5 of 11 tries before)."""
  ended = []

  def exit_now(code):
    ended.append(code)
    raise SystemExit(code)
  monkeypatch.setattr(scripts, "exit_now", exit_now)

  def interrupted(argv=None):
    raise KeyboardInterrupt
  monkeypatch.setattr(cli, "main", interrupted)
  with pytest.raises(SystemExit):
    cli.entry()
  monkeypatch.setattr(sys, "argv", ["script.py"])
  with pytest.raises(SystemExit):
    scripts.run(interrupted)
  assert ended == [130, 130]
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 2 and all(line.endswith("rerun to resume") for line in err)


def _sigint_self():
  import signal
  import time
  os.kill(os.getpid(), signal.SIGINT)
  time.sleep(0.05)          # the handler runs at the next bytecode boundary


def test_ctrl_c_during_a_save_waits_for_it_then_interrupts(python_sigint):
  import signal
  from jaxunlearn import stages
  saved = []
  with pytest.raises(KeyboardInterrupt):
    with stages.interrupts_deferred():
      _sigint_self()
      saved.append("the save went on")
  assert saved == ["the save went on"]
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_does_not_cut_the_unwinding_short(python_sigint):
  import signal
  restore = scripts.interrupt_once()
  try:
    with pytest.raises(KeyboardInterrupt):
      _sigint_self()
    _sigint_self()                       # ignored: no second KeyboardInterrupt
  finally:
    restore()
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.slow
def test_sigint_during_a_real_audit_exits_130_without_a_crash(tmp_path):
  import signal
  import subprocess
  npz = tiny.write_npz(tmp_path / "tiny.npz")
  flag = tmp_path / "paused"
  env = tiny.subprocess_env(JAXUNLEARN_TEST_PAUSE="population:retrain",
                            JAXUNLEARN_TEST_PAUSE_FILE=str(flag))
  env["PYTHONPATH"] = os.pathsep.join([str(tiny.KILLPOINT_DIR), env["PYTHONPATH"]])
  cmd = tiny.cli_command() + [
      "audit", f"--config={tiny.CONFIG}", f"--workdir={tmp_path / 'work'}",
      f"--config.dataset=npz:{npz}", "--config.audit.num_models=4",
      "--config.audit.chunk_size=2", "--config.audit.methods=('finetune',)",
      "--config.audit.statistics=('epsilon',)"]
  proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, cwd=tiny.REPO_ROOT)
  try:
    tiny.wait_for_pause(proc, flag, what="jaxunlearn audit", timeout=180,
                        output=lambda: proc.communicate()[1])
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  assert proc.returncode == 130, (proc.returncode, err[-2000:])
  assert err.strip().splitlines()[-1].endswith("rerun to resume") and "Traceback" not in err
