#!/usr/bin/env bash
# The report seeds 0-4 on Fashion-MNIST's random set at 60,000 images (experiments/RESULTS_fmnist.md,
# "The random set at 60,000 images"): 600 random training images forgotten, labels kept, the rows
# chosen on seed 100 (fmnist_random_select.sh) and the earlier untuned ones, epsilon and KLOM,
# N = 16, one audit per seed. Each seed's hold-out changes its training rows, so each seed's work
# dir builds its own shared store (128 models at keep 0.9, about 10 minutes) and populations on
# its first call (about 15 minutes a seed in all on 2 CPU cores); later calls reuse them. Then
# the table over seeds.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
D=matching:retrain_fraction=0.02,optimizer=adam,forget_batch_size=32,remain_batch_size=8,noise=0.8,teacher_fit=out,teacher_models=128,teacher_keep=0.9
R=retrain_short:remain_batch_size=64
ENTRIES=(
  "m_out_lr2=$D,forget_weight=1,learning_rate=0.01"
  "m_out_lr3=$D,forget_weight=1,learning_rate=0.001"
  "rs_2=$R,retrain_fraction=0.02,learning_rate=0.01,temperature=1.2"
  "rs_50=$R,retrain_fraction=0.5,learning_rate=0.003,temperature=1.1"
  "mo_sel=$D,forget_weight=3,learning_rate=0.002,margin_weight=10.0"
)
for seed in ${SEEDS:-0 1 2 3 4}; do
  $PY experiments/matching/fmnist_audit.py --forget random --seed "$seed" \
    --statistics epsilon,klom "${ENTRIES[@]}"
done
$PY experiments/matching/fmnist_audit.py --summarise runs/fm_audit_random \
  runs/fm_audit_random_seed{1,2,3,4} --labels none,m_out_lr2,m_out_lr3,mo_sel,rs_2,rs_50
