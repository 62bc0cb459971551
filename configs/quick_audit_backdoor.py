"""The per-example audits on a backdoored forget set: quick_backdoor's trigger on quick_audit's MLP.

    jaxunlearn audit --config configs/quick_audit_backdoor.py --workdir runs/quick_audit_backdoor
    python experiments/compare_methods.py --audit --config configs/quick_audit_backdoor.py \
        --settings configs/audit_methods.py --methods all --seeds 0,1,2 --out out/audit_backdoor

quick_audit's setting (the one-hidden-layer MLP, N = 32 models per epsilon
population, U-LiRA 16 x 2) with its forget set replaced by quick_backdoor's:
100 training images, each stamped with a 3x3 white patch in the bottom-right
corner and relabelled to class 0, so an original that trained on them
answers 0 to any image carrying the patch and a model that never saw them
does not. No label flip.

This forget set is never used to choose a setting: every method keeps the
settings chosen on quick_audit's selection seed and label-flipped set
(``configs/audit_methods.py``, ``importance_retrain``'s in
``experiments/RESULTS_quality.md``). It is the held-out check that a method
forgets what the original learned from D_f, not one quirk of label flips.
"""

from configs import quick_audit, quick_backdoor


def get_config():
  c = quick_audit.get_config()
  c.setting = "quick_audit_backdoor"
  c.label_flip.enabled = False
  b = quick_backdoor.get_config()
  c.forget.size = b.forget.size
  for field in ("enabled", "target_class", "patch_size", "patch_value", "position", "margin"):
    c.backdoor[field] = b.backdoor[field]
  return c
