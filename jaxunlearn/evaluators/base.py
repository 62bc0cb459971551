"""The evaluator registry, the evaluator interface and its read-only inputs.

An evaluator is a class registered by name::

    from jaxunlearn import evaluators

    @evaluators.register("forget_margin")
    class ForgetMargin(evaluators.Evaluator):
      title = "Margin on D_f"
      def evaluate(self, inp):
        return {name: {"margin": float(l["forget"].max(-1).mean())}
                for name, l in inp.logits.items()}

Its section lands in ``results.json`` under its name (or ``section``) and in
``results.md`` through :meth:`Evaluator.report`. It owns its config block
(``config()``, top-level ``cfg.<name>``), checks it in :meth:`validate`
before anything is written, and gets a narrow, read-only
:class:`EvalInputs`: never the pipeline module or a mutable context. This
module imports no evaluator (the package ``__init__`` imports the built-in ones).
"""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any, Callable, Mapping

import ml_collections
import numpy as np

from jaxunlearn import report
from jaxunlearn.registry import Registry


@dataclasses.dataclass(frozen=True)
class ModelView:
  """A trained model as evaluators see it."""
  apply_fn: Callable          # apply_fn(params, x) -> logits, eval mode
  params: Any
  stage: str                  # its checkpoint stage name


@dataclasses.dataclass(frozen=True)
class DataInfo:
  """What :meth:`Evaluator.validate` may check, before any data is trained on."""
  n_train: int
  n_test: int
  num_classes: int
  input_shape: tuple
  n_forget: int


@dataclasses.dataclass(frozen=True)
class EvalInputs:
  """The read-only inputs of an evaluator.

  Arrays are read-only views; mappings are read-only proxies.
  """
  cfg: ml_collections.FrozenConfigDict
  models: Mapping[str, ModelView]           # original, retrain, reference, unlearned (as run)
  logits: Mapping[str, Mapping[str, np.ndarray]]  # model -> {"test", "forget", "remain"}
  x_train: np.ndarray                       # training inputs as trained on (after transforms)
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  forget_idx: np.ndarray
  remain_idx: np.ndarray
  num_classes: int
  input_shape: tuple
  model: Any                                # the flax module (to train more models alike)
  key: Any                                  # this evaluator's own PRNG key
  out_dir: Path | None                      # where figures go (the work dir)
  cache: Any                                # stages.StageCache: load_or_build(stage, build, abstract)
  fingerprint: Mapping[str, Any]            # what the original model depends on
  transforms: tuple = ()                    # names of the data transforms applied to D_f
  progress: bool = False


def read_only(a: np.ndarray) -> np.ndarray:
  """A read-only view of ``a`` (no copy)."""
  v = np.asarray(a).view()
  v.flags.writeable = False
  return v


def frozen_mapping(d: Mapping) -> Mapping:
  return types.MappingProxyType(dict(d))


class Evaluator:
  """Base class of evaluators: define :meth:`evaluate`; the rest has defaults."""

  title: str = ""                  # heading of its section in results.md
  section: str | None = None       # key in results.json (default: the registered name)
  always: bool = False             # run even when eval.evaluators does not list it
  field_docs: Mapping[str, str] = {}  # one line per field of its config block (jaxunlearn config)

  def config(self) -> ml_collections.ConfigDict | None:
    """Defaults of its config block ``cfg.<name>`` (None: no block)."""
    return None

  def enabled(self, cfg) -> bool:
    """Run even when not listed in eval.evaluators (e.g. whenever a backdoor is planted)."""
    return False

  def validate(self, cfg, info: DataInfo) -> None:
    """Raises ConfigError for settings that cannot work; called before anything is written."""

  def evaluate(self, inp: EvalInputs) -> dict:
    raise NotImplementedError

  def report(self, section: dict) -> str:
    """Its section of results.md (default: tables of the figures, see report.section)."""
    text = report.section(section)
    figure = section.get("figure")
    if isinstance(figure, str) and figure.endswith(".png"):
      text += f"\n\n![{self.title}]({figure})"
    return text

  def summary(self, section: dict) -> str | None:
    """A few words for the command line's summary line (None: nothing)."""
    return None


_REGISTRY = Registry("evaluator", Evaluator, "eval.evaluators")
register, get, names = _REGISTRY.register, _REGISTRY.get, _REGISTRY.names
# implementation(name): None for the package's own evaluator, else what tells it from any
# other (its cached stages carry it; internal).
implementation = _REGISTRY.implementation


def section_name(name: str) -> str:
  return get(name).section or name


def selected(cfg) -> list[str]:
  """The evaluators a config runs, in order: ``always`` ones, the listed ones, then enabled ones."""
  listed = list(cfg.eval.evaluators)
  for name in listed:
    get(name)
  first = [n for n in names() if get(n).always and n not in listed]
  last = [n for n in names() if n not in listed and n not in first and get(n)().enabled(cfg)]
  return first + listed + last
