"""The ``accuracy`` evaluator: accuracy and mean cross-entropy of every model on test, D_f and D_r.

Always runs; its section is ``results.json``'s ``models``.
"""

from __future__ import annotations

from jaxunlearn import metrics, report
from jaxunlearn.evaluators import base

PARTS = ("test", "forget", "remain")


@base.register("accuracy")
class Accuracy(base.Evaluator):
  title = "Accuracy and loss"
  section = "models"
  always = True

  def evaluate(self, inp: base.EvalInputs) -> dict:
    labels = {"test": inp.y_test, "forget": inp.y_train[inp.forget_idx],
              "remain": inp.y_train[inp.remain_idx]}
    out = {}
    for name, logits in inp.logits.items():
      figures = {}
      for part in PARTS:
        acc, loss = metrics.accuracy_and_loss(logits[part], labels[part])
        figures[f"acc_{part}"], figures[f"loss_{part}"] = acc, loss
      out[name] = figures
    return out

  def report(self, section: dict) -> str:
    keys = ("acc_test", "acc_forget", "acc_remain", "loss_test", "loss_forget")
    names = [m for m in report.MODEL_ORDER if m in section]
    names += [m for m in section if m not in names]
    return report.table(["model", *keys], [[m, *(section[m].get(k) for k in keys)]
                                           for m in names])

  def summary(self, section: dict) -> str:
    return "; ".join(f"{name} acc_test={f['acc_test']:.4f} loss_forget={f['loss_forget']:.4g}"
                     for name, f in section.items())
