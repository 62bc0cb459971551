"""The paper-size Fashion-MNIST configs: they validate, and their step counts come from 60,000 rows.

Nothing here trains; the one test that loads the data skips, saying why, without Debian's package.
"""

import pytest

from configs import fmnist_audit, fmnist_mlp, fmnist_mlp_backdoor
from experiments import method_requests
from jaxunlearn import auditor, cost, plan as plan_lib, plugins
from jaxunlearn.datasets import fashion_mnist
from tests.support import tiny

N_TRAIN, N_FORGET = 60_000, 600
SETTINGS = tiny.REPO_ROOT / "configs" / "fmnist_audit_methods.py"


def test_fmnist_mlp_is_the_papers_setting_with_our_mlp():
  for module in (fmnist_mlp, fmnist_mlp_backdoor):
    c = plugins.validate(module.get_config())
    assert c.dataset == "fashion_mnist" and c.model == "mlp"
    assert tuple(c.model_kwargs.hidden) == (512, 256)   # written to results.json's config
    assert c.forget.size == N_FORGET and c.reference.size == 6000
    assert c.unlearn.lam == 0.01 and c.unlearn.epochs == 10
  assert fmnist_mlp_backdoor.get_config().backdoor.enabled


def _fraction(block, n_remain, c):
  plan = plan_lib.make_plan("x", block)
  return cost.plan_cost(plan, n_forget=N_FORGET, n_remain=n_remain, train_epochs=c.train.epochs,
                        train_batch_size=c.train.batch_size, reference_source="remain",
                        n_reference=6000, reference_epochs=50)["fraction_of_retrain"]


def test_fmnist_audit_counts_its_steps_from_its_own_schedule():
  c = plugins.validate(fmnist_audit.get_config())
  assert c.dataset == "fashion_mnist" and tuple(c.model_kwargs.hidden) == (128,)
  assert c.train.epochs == 20 and c.forget.size == N_FORGET and c.label_flip.enabled
  assert c.audit.num_models == 16 and c.audit.ulira.num_originals == 8
  specs = {s.label: s.block for s in auditor.method_specs(c)}
  assert set(specs) == {"lightweight", "finetune", "neggrad_plus", "isr"}
  # importance_retrain: retraining's steps on this D_r at 12 of its 64 rows, so 12/64 of its cost.
  assert specs["isr"].steps == 20 * ((N_TRAIN - N_FORGET) // 64)
  assert _fraction(specs["isr"], N_TRAIN - N_FORGET, c) == pytest.approx(12 / 64)
  # compare_methods --audit's settings hold 5% out: the count follows the smaller D_r.
  settings = method_requests.load_settings(str(SETTINGS))
  held = plugins.validate(settings.apply(fmnist_audit.get_config(), "importance_retrain"))
  assert held.holdout.size == 0.05
  assert _fraction(held.unlearn, N_TRAIN - 3000 - N_FORGET, held) == pytest.approx(12 / 64)
  assert settings.unlearn_settings("lightweight") == {}   # the paper's setting, as configured


@pytest.mark.skipif(not fashion_mnist.DEBIAN_DIR.is_dir(), reason=(
    f"{fashion_mnist.DEBIAN_DIR} is absent: install Debian's dataset-fashion-mnist to check "
    "fmnist_audit against the real data"))
def test_fmnist_audit_prepares_on_the_real_data_and_writes_nothing(tmp_path):
  from jaxunlearn import request
  cfg = fmnist_audit.get_config()
  specs = auditor.method_specs(plugins.validate(fmnist_audit.get_config()))
  prep = request.prepare(cfg, tmp_path / "w", methods=specs, checks=(auditor.check,))
  assert prep.data.n_train == N_TRAIN and prep.splits.n_forget == N_FORGET
  assert prep.splits.reference_idx.size == 6000
  assert not (tmp_path / "w").exists()
