"""Paper setting: Fashion-MNIST, MLP (Table II: |D_f| = 600, |D_s| = 6000, lam 0.01, 10 epochs).

    tfds build fashion_mnist --file_format=array_record
    jaxunlearn run --config configs/fmnist_mlp.py --workdir runs/fmnist_mlp
"""

from configs import mnist_lenet


def get_config():
  c = mnist_lenet.get_config()
  c.setting = "fmnist_mlp"
  c.dataset = "fashion_mnist"
  c.model = "mlp"
  c.train.epochs = 30
  c.unlearn.epochs = 10
  return c
