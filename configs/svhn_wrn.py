"""Paper setting: SVHN, Wide ResNet (Table I; Table II: |D_f| = 732, |D_s| = 7325, lam 0.01, 10 epochs).

    tfds build svhn_cropped --file_format=array_record
    jaxunlearn run --config configs/svhn_wrn.py --workdir runs/svhn_wrn

WRN-16-4 (the paper names no depth or width), SGD with momentum and a cosine
schedule; the reference model uses the same schedule.
"""

from jaxunlearn.plugins import default_config


def get_config():
  c = default_config()
  c.setting = "svhn_wrn"
  c.dataset = "svhn_cropped"
  c.model = "wide_resnet"
  c.model_kwargs.depth = 16
  c.model_kwargs.width = 4
  c.train.epochs = 30
  c.train.batch_size = 128
  c.train.optimizer = "sgd"
  c.train.learning_rate = 0.05
  c.train.momentum = 0.9
  c.train.weight_decay = 5e-4
  c.train.schedule = "cosine"
  c.forget.fraction = 0.01     # 732 of 73,257
  c.reference.size = 0.1       # 7,325 (7,326 after rounding)
  c.reference.epochs = 30
  c.unlearn.lam = 0.01
  c.unlearn.kl_reduction = "sum"   # eq. (1) read literally; docs/paper_fidelity.md
  c.unlearn.epochs = 10
  c.unlearn.forget_batch_size = 64
  c.unlearn.remain_batch_size = 128
  c.unlearn.optimizer = "sgd"
  c.unlearn.learning_rate = 0.01
  c.unlearn.momentum = 0.9
  c.eval.batch_size = 1000
  return c
