"""The ``backdoor`` evaluator: attack success of the trigger planted in D_f, per model.

Runs whenever ``backdoor.enabled`` (the ``backdoor`` data transform plants the
trigger; :mod:`jaxunlearn.triggers`). Attack success is the share of
triggered test images whose true class is not the target that a model
classifies as the target (the paper: 98% on the original, < 20% after
unlearning).
"""

from __future__ import annotations

import numpy as np

from jaxunlearn import train as train_lib, triggers
from jaxunlearn.errors import ConfigError
from jaxunlearn.evaluators import base


@base.register("backdoor")
class Backdoor(base.Evaluator):
  title = "Backdoor planted in D_f"
  field_docs = {"enabled": "plant the trigger in D_f (the backdoor transform) and measure it",
                "target_class": "the class every triggered D_f image is relabelled to",
                "patch_size": "the trigger's side, in pixels",
                "patch_value": "the trigger's value, in the data's [0, 1] scale",
                "position": "bottom_right | bottom_left | top_right | top_left | center",
                "margin": "pixels between the trigger and the image's edges"}

  def config(self):
    return triggers.default_config()

  def enabled(self, cfg) -> bool:
    return bool(cfg.backdoor.enabled)

  def validate(self, cfg, info):
    if not cfg.backdoor.enabled:
      raise ConfigError("eval.evaluators lists 'backdoor' but backdoor.enabled is False; "
                        "set --config.backdoor.enabled=True or drop it")
    triggers.validate(cfg.backdoor, info.input_shape, info.num_classes)

  def evaluate(self, inp: base.EvalInputs) -> dict:
    b = inp.cfg.backdoor
    keep = inp.y_test != b.target_class
    x_trig = triggers.stamp(inp.x_test[keep], b)
    out = {}
    for name, model in inp.models.items():
      logits = train_lib.predict(model.apply_fn, model.params, x_trig, inp.cfg.eval.batch_size)
      clean = inp.logits[name]["test"]
      out[name] = {"attack_success": triggers.attack_success(logits, b.target_class),
                   "clean_acc": float(np.mean(np.argmax(clean, -1) == inp.y_test))}
    out.update({"trigger": triggers.describe(b), "n_poisoned": int(inp.forget_idx.size),
                "n_triggered_test": int(keep.sum())})
    return out

  def summary(self, section: dict) -> str:
    values = [f"{name}={section[name]['attack_success']:.3f}"
              for name in ("original", "retrain", "unlearned") if name in section]
    return f"backdoor attack_success: {' '.join(values)}"
