"""Quick end-to-end run on the embedded 5,000-image MNIST subset (CPU, minutes).

    jaxunlearn run --config configs/quick.py --workdir runs/quick

LeNet-5 on ``mnist5k`` (4,000 train / 1,000 test), forget 1% (40 images),
reference model on 10% (400 images), 50 epochs as in the paper.

Why the unlearning settings differ from the paper's (lam 0.01, 2 epochs, kept
in ``configs/mnist_lenet.py``): D_f here is 40 images, so an epoch over D_f at
the paper's forget batch of 64 is a single step. Under the batch-mean reading
of the KL term (``unlearn.kl_reduction="mean"``, this config's) the paper's
defaults barely move the model, and under the literal sum of eq. (1) they
barely move it either: D_f loss 0.0022 (mean) and 0.0038 (sum) against the
retrained model's 0.159 (measured 2026-11-29, docs/paper_fidelity.md).
The table below was measured before that (seed 0, CPU), mean loss on D_f:
original 0.0021, retrained 0.137.

    lam   epochs  lr     unlearned loss_forget  test acc (retrained 0.977)
    0.01  2       0.01   0.0022                 0.977   (paper defaults)
    0.1   10      0.01   0.0208                 0.976
    0.3   5       0.01   0.0444                 0.971
    0.2   5       0.02   0.0465                 0.975   <- chosen
    0.2   10      0.01   0.0429                 0.977

lam 0.2 with 5 epochs at lr 0.02 moves the forget loss about three quarters
of the way (on a log scale) to the retrained model's in about 1.5 s and keeps
test accuracy within 0.002 of retraining.

Evaluators: membership inference (8 shadow models under one vmap) and output
distributions. The shadow pool is half the test split (500 images; each
shadow trains on its own 250), the other 500 test images are held out for
non-members. Shadow epochs, measured on this config (seed 0, 2 shared CPU
cores, load average 5-6; balanced accuracy of the sorted-softmax attack on
D_f vs as many held-out test images, 40 + 40):

    shadow epochs  pool  shadow test acc  train s (compile s)  original  retrain  unlearned
    5              500   0.471            7.4 (9.3)            0.450     0.438    0.450
    10             500   0.735            13.3 (8.0)           0.512     0.500    0.512
    20             500   0.837            37.1 (11.8)          0.525     0.512    0.525  <- chosen
    10             800   0.854            27.6 (8.3)           0.500     0.487    0.512

The attack stays near chance on every model here (LeNet-5 generalises well
on MNIST and D_f is 40 images), whatever the shadows; 20 epochs (the
original's schedule) gives the shadows closest to the target and keeps the
whole run within about 2.5 minutes on this CPU. For an attack that does
find members, see ``experiments/mia_sanity.py``.
"""

from jaxunlearn.plugins import default_config


def get_config():
  c = default_config()
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
  c.unlearn.lam = 0.2
  c.unlearn.epochs = 5
  c.unlearn.forget_batch_size = 8
  c.unlearn.remain_batch_size = 64
  c.unlearn.optimizer = "sgd"
  c.unlearn.learning_rate = 0.02
  c.eval.evaluators = ("mia", "loss_attack", "distributions")
  c.mia.num_shadows = 8
  c.mia.shadow_epochs = 20
  c.mia.pool_size = 0.5
  return c
