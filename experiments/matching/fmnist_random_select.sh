#!/usr/bin/env bash
# The selection on Fashion-MNIST's random set at 60,000 images (experiments/matching/README.md,
# twenty-first look): seed 100's request (600 random training images, labels kept), N = 16,
# epsilon and KLOM, settings of `matching` (0.02 of retraining's examples, the shared store of
# 128 models at keep 0.9 that seed 0's work dir built) and of `retrain_short` at 0.5 in one
# audit; its populations are trained in its own work dir on the first call.
# Scores: python experiments/matching/fmnist_audit.py --score runs/fm_audit_random_seed100
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
D=matching:retrain_fraction=0.02,optimizer=adam,forget_batch_size=32,remain_batch_size=8,noise=0.8,teacher_fit=out,teacher_models=128,teacher_keep=0.9
R=retrain_short:remain_batch_size=64,retrain_fraction=0.5
$PY experiments/matching/fmnist_audit.py --forget random --seed 100 --statistics epsilon,klom \
  --share-stores runs/fm_audit_random/attribution \
  "mo_lr1e2_w1=$D,forget_weight=1,learning_rate=0.01" \
  "mo_lr3e3_w1=$D,forget_weight=1,learning_rate=0.003" \
  "mo_lr3e3_w3=$D,forget_weight=3,learning_rate=0.003" \
  "mo_lr3e3_w1_mw3=$D,forget_weight=1,learning_rate=0.003,margin_weight=3.0" \
  "mo_lr3e3_w3_mw3=$D,forget_weight=3,learning_rate=0.003,margin_weight=3.0" \
  "mo_lr2e3_w3_mw10=$D,forget_weight=3,learning_rate=0.002,margin_weight=10.0" \
  "mo_lr5e3_w1_mw3=$D,forget_weight=1,learning_rate=0.005,margin_weight=3.0" \
  "mo_lr1e3_w10_mw10=$D,forget_weight=10,learning_rate=0.001,margin_weight=10.0" \
  "rs50_lr3e3_t11=$R,learning_rate=0.003,temperature=1.1" \
  "rs50_lr5e3_t11=$R,learning_rate=0.005,temperature=1.1" \
  "rs50_lr5e3_t10=$R,learning_rate=0.005,temperature=1.0" \
  "rs50_lr1e2_t11=$R,learning_rate=0.01,temperature=1.1" "$@"
