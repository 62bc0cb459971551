"""A backdoor planted in D_f, then unlearned (mnist5k, LeNet-5, CPU, minutes).

    jaxunlearn run --config configs/quick_backdoor.py --workdir runs/quick_backdoor

The quick setting with 100 forget images (2.5% of the 4,000 training images),
each stamped with a 3x3 white patch in the bottom-right corner and relabelled
to class 0; the original trains on D_r and the poisoned D_f. The backdoor
evaluator reports attack success (triggered test images of classes 1-9 that
are classified as 0) and clean test accuracy.

Unlearning settings are quick's (lam 0.2, 5 epochs over D_f in batches of 8,
SGD lr 0.02), chosen by measurement on this config (seed 0, CPU). Attack
success: original 0.989, retrained 0.002, reference 0.011; clean test
accuracy: original 0.976, retrained 0.973.

    lam   epochs  lr    forget batch  unlearned attack success  clean acc
    0.01  2       0.01  64            0.976                     0.975  (paper defaults)
    0.01  2       0.01  8             0.858                     0.962
    0.2   2       0.02  8             0.076                     0.964
    0.05  5       0.02  8             0.098                     0.963
    0.1   5       0.01  8             0.090                     0.961
    0.1   5       0.02  8             0.062                     0.963
    0.1   10      0.01  8             0.080                     0.965
    0.2   5       0.02  8             0.039                     0.967  <- chosen

The paper's defaults under this config's batch-mean reading of the KL term
(``unlearn.kl_reduction="mean"``) barely move the model here (D_f is 100
images: two steps per epoch at batch 64), so the backdoor survives (0.973).
Read literally (eq. 1 sums the KL over D_f: ``kl_reduction="sum"``, what the
paper configs use) the same defaults remove it: attack success 0.093, at a
clean accuracy of 0.936 against the retrained model's 0.975 (measured
2026-11-29; docs/paper_fidelity.md). lam 0.2 for 5 epochs
at lr 0.02 brings attack success well under the paper's 20% bar, closest to
retraining, with clean accuracy within 0.006 of the retrained model, in about
5 s of unlearning on 2 CPU cores. The paper's defaults, for comparison:

    jaxunlearn run --config configs/quick_backdoor.py --workdir runs/quick_backdoor \
      --config.unlearn.lam=0.01 --config.unlearn.epochs=2 \
      --config.unlearn.learning_rate=0.01 --config.unlearn.forget_batch_size=64 \
      --config.unlearn.kl_reduction=sum
"""

from configs import quick


def get_config():
  c = quick.get_config()
  c.setting = "quick_backdoor"
  c.forget.size = 100
  c.backdoor.enabled = True
  c.backdoor.target_class = 0
  c.backdoor.patch_size = 3
  c.backdoor.patch_value = 1.0
  c.backdoor.position = "bottom_right"
  c.backdoor.margin = 1
  return c
