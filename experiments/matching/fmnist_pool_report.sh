#!/usr/bin/env bash
# The report seeds 0-4 on Fashion-MNIST's pool at 60,000 images (experiments/RESULTS_fmnist.md,
# "Tuned on a selection seed of this setting"; experiments/matching/README.md, twentieth and
# twenty-first looks): every row chosen on seed 100 (fmnist_pool_select.sh) and the earlier rows,
# epsilon and KLOM, N = 16, one audit per seed (fmnist_audit.py rewrites a work dir's audit.json
# with the rows of its call, so every row is named each time; cached populations are reused).
# Seed 0's work dir holds the pool store the others link to. Then the table over seeds. The
# `_d2` rows repeat a row under a new label: new keys for every run, a second draw;
# `m_k256_os05` is the twenty-third look's choice (`overshoot`).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
B=matching:retrain_fraction=0.02,optimizer=adam,noise=0.8,teacher_fit=pool,teacher_models=64,teacher_keep=0.99
C=$B,forget_batch_size=32,remain_batch_size=8
D=matching:retrain_fraction=0.02,optimizer=adam,forget_batch_size=32,remain_batch_size=8,noise=0.8,teacher_fit=pool,teacher_models=64,teacher_keep=0.99
R=retrain_short:remain_batch_size=64
ENTRIES=(
  "m_pool_lr2=$D,forget_weight=10,learning_rate=0.01"
  "m_pool_lr3=$D,forget_weight=10,learning_rate=0.001"
  "rs_2=$R,retrain_fraction=0.02,learning_rate=0.01,temperature=1.2"
  "rs_50=$R,retrain_fraction=0.5,learning_rate=0.003,temperature=1.1"
  "m_sel=$C,learning_rate=0.003,forget_weight=50"
  "m_acc=$C,learning_rate=0.002,forget_weight=10"
  "rs50_sel=$R,retrain_fraction=0.5,learning_rate=0.005,temperature=1.1"
  "rs2_sel=$R,retrain_fraction=0.02,learning_rate=0.03,temperature=1.2"
  "m_mw_sel=$C,learning_rate=0.003,forget_weight=50,margin_weight=3.0"
  "m_mw_acc=$C,learning_rate=0.0015,forget_weight=30,margin_weight=10.0,noise_along=margin"
  "m_mw_alt=$C,learning_rate=0.002,forget_weight=30,margin_weight=3.0"
  "m_k128_sel=$C,teacher_models=128,learning_rate=0.002,forget_weight=30,margin_weight=3.0,noise_along=margin"
  "m_k128_acc=$C,teacher_models=128,learning_rate=0.0015,forget_weight=30,margin_weight=10.0,noise_along=margin"
  "m_k128_alt=$C,teacher_models=128,learning_rate=0.003,forget_weight=50,margin_weight=3.0"
  "m_k256_sel=$C,teacher_models=256,learning_rate=0.002,forget_weight=30,margin_weight=3.0"
  "m_k256_acc=$C,teacher_models=256,learning_rate=0.0015,forget_weight=50,margin_weight=3.0"
  "m_k256_sel_d2=$C,teacher_models=256,learning_rate=0.002,forget_weight=30,margin_weight=3.0"
  "m_k256_acc_d2=$C,teacher_models=256,learning_rate=0.0015,forget_weight=50,margin_weight=3.0"
  "rs50_sel_d2=$R,retrain_fraction=0.5,learning_rate=0.005,temperature=1.1"
  "m_k256_os05=$C,teacher_models=256,learning_rate=0.002,forget_weight=30,margin_weight=3.0,overshoot=0.05"
)
for seed in ${SEEDS:-0 1 2 3 4}; do
  share=()
  [ "$seed" = 0 ] || share=(--share-stores runs/fm_audit_flip_pool/attribution)
  $PY experiments/matching/fmnist_audit.py --forget flip_pool --seed "$seed" \
    --statistics epsilon,klom "${share[@]}" "${ENTRIES[@]}"
done
$PY experiments/matching/fmnist_audit.py --summarise runs/fm_audit_flip_pool \
  runs/fm_audit_flip_pool_seed{1,2,3,4} \
  --labels none,m_sel,m_acc,m_mw_sel,m_mw_acc,m_mw_alt,m_k128_sel,m_k128_acc,m_k128_alt,m_k256_sel,m_k256_acc,m_k256_sel_d2,m_k256_acc_d2,m_k256_os05,rs2_sel,rs50_sel,rs50_sel_d2
