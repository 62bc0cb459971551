"""Paper setting: MNIST, LeNet-5 (Table II: |D_f| = 600, |D_s| = 6000, lam 0.01, 2 epochs).

    tfds build mnist --file_format=array_record   # once, needs TensorFlow + internet
    jaxunlearn run --config configs/mnist_lenet.py --workdir runs/mnist_lenet

The paper gives no training schedule for the original; ours is Adam 1e-3,
batch 64, 20 epochs. The reference model trains 50 epochs (Table III).
"""

from jaxunlearn.plugins import default_config


def get_config():
  c = default_config()
  c.setting = "mnist_lenet"
  c.dataset = "mnist"
  c.model = "lenet5"
  c.train.epochs = 20
  c.train.batch_size = 64
  c.train.optimizer = "adam"
  c.train.learning_rate = 1e-3
  c.forget.fraction = 0.01     # 600 of 60,000
  c.reference.size = 0.1       # 6,000
  c.reference.epochs = 50
  c.unlearn.lam = 0.01
  c.unlearn.kl_reduction = "sum"   # eq. (1) read literally; docs/paper_fidelity.md
  c.unlearn.epochs = 2
  c.unlearn.forget_batch_size = 64
  c.unlearn.remain_batch_size = 64
  c.unlearn.optimizer = "sgd"
  c.unlearn.learning_rate = 0.01
  return c
