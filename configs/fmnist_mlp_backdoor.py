"""Paper setting, backdoor: Fashion-MNIST, MLP, a trigger planted in D_f, then unlearned.

    apt-get install dataset-fashion-mnist   # once, as root (or: tfds build fashion_mnist)
    jaxunlearn run --config configs/fmnist_mlp_backdoor.py --workdir runs/fmnist_mlp_backdoor

``configs/fmnist_mlp.py`` (the full 60,000 images, our 784-512-256-10 MLP,
|D_f| = 600, |D_s| = 6,000, lam 0.01, 10 unlearning epochs) with every D_f
image stamped with a 3x3 white patch in the bottom-right corner and relabelled
to class 0, as ``configs/quick_backdoor.py`` does on mnist5k; the original
trains on D_r and the poisoned D_f. The backdoor evaluator reports attack
success (triggered test images of classes 1-9 classified as 0; the paper: 98%
on the original, under 20% after unlearning) and clean test accuracy.
"""

from configs import fmnist_mlp


def get_config():
  c = fmnist_mlp.get_config()
  c.setting = "fmnist_mlp_backdoor"
  c.backdoor.enabled = True
  c.backdoor.target_class = 0
  c.backdoor.patch_size = 3
  c.backdoor.patch_value = 1.0
  c.backdoor.position = "bottom_right"
  c.backdoor.margin = 1
  return c
