"""Stopping rules judged by the per-example audits: epochs, kl_tol and calibrated (CPU).

    jaxunlearn audit --config configs/quick_audit_calibrated.py --workdir runs/quick_audit_cal

quick_audit's MLP on mnist5k with quick's random 1% forget set (not the
label-flipped one: the calibrated stop compares D_f's loss with held-out
examples of the same classes, which flipped labels would not match) and 5%
of the training set held out (``holdout.size``), which the calibrated stop
and SCRUB+R read. Audited, each from one original with its own seed (and,
for the paper's method, its own D_s and reference):

* ``fixed``: the paper's method at quick's settings, 5 epochs (``stop=epochs``);
* ``kl_tol``: lam 0.1, lr 0.01, up to 60 epochs, stopping at the first epoch
  whose KL to the reference on D_f is below 0.1 (the paper's own stop);
* ``calibrated``: the same settings with ``stop=calibrated`` (configs/quick_calibrated.py);
* ``scrub_r``: SCRUB+R at quick_methods' settings (its own rewind);
* ``scrub_cal``: SCRUB with the calibrated stop in place of the rewind.

Measured figures: see the issue note and benchmarks/RESULTS.md (filled in
from ``audit.json`` of the command above).
"""

from configs import quick_audit

_SCRUB = "optimizer=sgd,momentum=0.9,weight_decay=0.0005,learning_rate=0.0005,msteps=2"


def get_config():
  c = quick_audit.get_config()
  c.setting = "quick_audit_calibrated"
  c.forget.size = 0              # quick's random 1%
  c.label_flip.enabled = False
  c.holdout.size = 0.05
  c.audit.methods = (
      "fixed=lightweight",
      "kl_tol=lightweight:lam=0.1,learning_rate=0.01,epochs=60,stop=kl_tol,tol=0.1",
      "calibrated=lightweight:lam=0.1,learning_rate=0.01,epochs=60,stop=calibrated",
      f"scrub_r=scrub_r:{_SCRUB},epochs=3",
      f"scrub_cal=scrub:{_SCRUB},epochs=10,stop=calibrated",
  )
  return c
