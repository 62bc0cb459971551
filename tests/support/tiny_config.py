"""Tiny test config: a one-hidden-layer MLP on a synthetic 8x8 npz dataset.

    jaxunlearn run --config tests/support/tiny_config.py --workdir DIR \
        --config.dataset=npz:PATH

Sizes are chosen for speed, not accuracy: a whole run takes seconds on CPU.
"""

from jaxunlearn.plugins import default_config


def get_config():
  c = default_config()
  c.setting = "tiny"
  c.dataset = "npz:tiny.npz"
  c.model = "mlp"
  c.model_kwargs.hidden = (16,)
  c.train.epochs = 2
  c.train.batch_size = 32
  c.forget.size = 12
  c.reference.size = 48
  c.reference.epochs = 2
  c.unlearn.lam = 0.2
  c.unlearn.epochs = 1
  c.unlearn.forget_batch_size = 4
  c.unlearn.remain_batch_size = 16
  c.eval.batch_size = 128
  c.report.progress = False
  return c
