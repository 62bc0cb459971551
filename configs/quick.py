"""Quick end-to-end run on the embedded 5,000-image MNIST subset (CPU, minutes).

    jaxunlearn run --config configs/quick.py --workdir runs/quick

LeNet-5 on ``mnist5k`` (4,000 train / 1,000 test), forget 1% (40 images),
reference model on 10% (400 images). Unlearning settings were chosen by
measurement, see the ``unlearn`` block below.
"""

from jaxunlearn.config import base_config


def get_config():
  c = base_config()
  c.setting = "quick"
  c.dataset = "mnist5k"
  c.model = "lenet5"
  c.train.epochs = 20
  c.train.batch_size = 64
  c.train.optimizer = "adam"
  c.train.learning_rate = 1e-3
  c.forget.fraction = 0.01
  c.reference.size = 0.1
  c.reference.epochs = 50
  c.unlearn.lam = 0.01
  c.unlearn.epochs = 2
  c.unlearn.forget_batch_size = 8
  c.unlearn.remain_batch_size = 64
  c.unlearn.optimizer = "sgd"
  c.unlearn.learning_rate = 0.01
  return c
