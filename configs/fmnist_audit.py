"""The per-example audits at the paper's scale: Fashion-MNIST, 60,000 images (CPU, hours).

    apt-get install dataset-fashion-mnist   # once, as root (or: tfds build fashion_mnist)
    jaxunlearn audit --config configs/fmnist_audit.py --workdir runs/fmnist_audit
    # the methods side by side, with time (configs/fmnist_audit_methods.py: holdout 0.05):
    python experiments/compare_methods.py --audit --config configs/fmnist_audit.py \
        --settings configs/fmnist_audit_methods.py \
        --methods importance_retrain,lightweight,neggrad_plus,finetune --seeds 0 \
        --out out/fmnist_audit_methods

``configs/quick_audit.py``'s model and schedule on the full ``fashion_mnist``
(60,000 training / 10,000 test images): a one-hidden-layer MLP of 128 units
(784-128-10), 20 epochs of Adam 1e-3 at batch 64, the reference 50 epochs on
10% (6,000 images). D_f: 600 random training images (1%) whose labels are
flipped to another class (``label_flip``), so the original must memorise them.

Populations: N = 16 per epsilon population (``audit.num_models``); U-LiRA with
8 originals, each on D_r and a random half of D_f, each unlearned twice
(forgetting a random half of the D_f images it kept). ``audit.chunk_size`` 8:
a population member gathers its training rows, 60,000 x 28 x 28 float32
(188 MB), so a chunk of 8 works in about 1.6 GB of host memory and 16 would
need twice that; 8 members per vmapped call keep both CPU cores busy, and a
finished chunk is checkpointed (half a population).

Methods (``audit.methods``), every step count from this setting's schedule,
none from mnist5k's:

* ``lightweight``: the paper's method at the paper's Fashion-MNIST setting
  (the ``unlearn`` block: lam 0.01, 10 epochs over D_f in batches of 64,
  SGD lr 0.01, the KL summed over the forget batch; reference on 6,000);
  10 x ceil(600 / 64) = 100 steps, 0.26 of retraining's examples with its
  reference (20 epochs make retraining cheaper than fmnist_mlp's 30);
* ``finetune`` and ``neggrad_plus``: the settings and learning rates of
  ``configs/audit_methods.py`` (tuned there on quick_audit's MLP, the same
  architecture, not here): finetune 20 epochs of D_f's steps (200 steps of
  64 D_r rows), NegGrad+ 2 passes over D_r (2 x 929 steps, a tenth of
  retraining's 20 passes);
* ``isr`` (``importance_retrain``): a fresh model on D_r for retraining's
  step count here, 20 x (59,400 // 64) = 18,560 steps (:func:`retrain_steps`),
  at 12 rows per step (0.19 of retraining's examples), lr 2e-3, temperature
  1.2 (``configs/quick_methods.py``). The count is computed from 60,000 rows
  when the config is built: an override of ``forget.size``, ``holdout.size``,
  ``train.epochs`` or ``train.batch_size`` on the command line does not
  change it (set ``audit.methods`` anew, or use :func:`get_config`'s copy in
  a config of your own).

Not measured yet: the issue's run is ``compare_methods --audit`` at seed 0 on
these four methods (the second command above).
"""

from configs import audit_methods, quick_audit

N_TRAIN = 60_000      # fashion_mnist's training images
N_FORGET = 600


def retrain_steps(c, holdout: int = 0) -> int:
  """Retraining's optimizer steps on this setting's D_r: ``train.epochs`` passes at
  ``train.batch_size``, the last partial batch dropped (jaxunlearn/cost.py)."""
  n_remain = N_TRAIN - int(c.forget.size) - int(holdout)
  return int(c.train.epochs) * (n_remain // int(c.train.batch_size))


def method_spec(label: str, method: str, fields: dict) -> str:
  """``label=method:field=value,...`` for ``audit.methods`` (own hyperparameters unprefixed)."""
  items = ",".join(f"{k.split('.')[-1]}={v!r}" for k, v in fields.items())
  return f"{label}={method}" + (f":{items}" if items else "")


def get_config():
  c = quick_audit.get_config()
  c.setting = "fmnist_audit"
  c.dataset = "fashion_mnist"
  c.forget.size = N_FORGET
  # The paper's Fashion-MNIST setting (configs/fmnist_mlp.py), for the paper's method.
  c.unlearn.lam = 0.01
  c.unlearn.kl_reduction = "sum"
  c.unlearn.epochs = 10
  c.unlearn.forget_batch_size = 64
  c.unlearn.remain_batch_size = 64
  c.unlearn.optimizer = "sgd"
  c.unlearn.learning_rate = 0.01
  c.audit.num_models = 16
  c.audit.chunk_size = 8
  c.audit.ulira.num_originals = 8
  c.audit.ulira.forget_sets_per_original = 2
  isr = {"steps": retrain_steps(c), "remain_batch_size": 12, "learning_rate": 0.002,
         "importance_retrain.temperature": 1.2}
  c.audit.methods = (
      "lightweight",
      method_spec("finetune", "finetune", audit_methods.unlearn_settings("finetune")),
      method_spec("neggrad_plus", "neggrad_plus", audit_methods.unlearn_settings("neggrad_plus")),
      method_spec("isr", "importance_retrain", isr))
  return c
