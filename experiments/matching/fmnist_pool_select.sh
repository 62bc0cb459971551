#!/usr/bin/env bash
# The selection on Fashion-MNIST's pool at 60,000 images (experiments/matching/README.md, twentieth
# and twenty-first looks): seed 100's request (600 of the 2,400 flipped pool images), N = 16,
# epsilon and KLOM, every setting of `matching` (0.02 of retraining's examples, the pool store of
# 64 models) and of `retrain_short` at 0.02 and 0.5 in one audit. Populations are cached in the work dir, so a rerun
# only recomputes the statistics. The pool store is read from seed 0's work dir (run
# `fmnist_audit.py --forget flip_pool` there first, or drop --share-stores to build one here);
# the m_k128 rows build a second pool store of 128 models (about 11 minutes), the m_k256 rows a
# third of 256 (about 30 minutes); the _os rows move each target past itself (`overshoot`, the
# twenty-third look).
# Scores: python experiments/matching/fmnist_audit.py --score runs/fm_audit_flip_pool_seed100
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
B=matching:retrain_fraction=0.02,optimizer=adam,noise=0.8,teacher_fit=pool,teacher_models=64,teacher_keep=0.99
C=$B,forget_batch_size=32,remain_batch_size=8
R=retrain_short:remain_batch_size=64
E=()
for lr in 0.003 0.01 0.03; do for t in 1.0 1.2 1.5; do
  tag="${lr//./p}_t${t//./p}"
  E+=("rs50_lr${tag}=$R,retrain_fraction=0.5,learning_rate=${lr},temperature=${t}")
  E+=("rs2_lr${tag}=$R,retrain_fraction=0.02,learning_rate=${lr},temperature=${t}")
done; done
$PY experiments/matching/fmnist_audit.py --forget flip_pool --seed 100 --statistics epsilon,klom \
  --share-stores runs/fm_audit_flip_pool/attribution \
  "m_lr2_w10_32_8=$B,learning_rate=0.01,forget_weight=10,forget_batch_size=32,remain_batch_size=8" \
  "m_lr5e3_w10_32_8=$B,learning_rate=0.005,forget_weight=10,forget_batch_size=32,remain_batch_size=8" \
  "m_lr3e3_w10_32_8=$B,learning_rate=0.003,forget_weight=10,forget_batch_size=32,remain_batch_size=8" \
  "m_lr2_w10_24_16=$B,learning_rate=0.01,forget_weight=10,forget_batch_size=24,remain_batch_size=16" \
  "m_lr2_w10_16_24=$B,learning_rate=0.01,forget_weight=10,forget_batch_size=16,remain_batch_size=24" \
  "m_lr2_w10_32_32=$B,learning_rate=0.01,forget_weight=10,forget_batch_size=32,remain_batch_size=32" \
  "m_lr2_w3_32_8=$B,learning_rate=0.01,forget_weight=3,forget_batch_size=32,remain_batch_size=8" \
  "m_lr2_w30_32_8=$B,learning_rate=0.01,forget_weight=30,forget_batch_size=32,remain_batch_size=8" \
  "m_lr2_w10_32_8_cos=$B,learning_rate=0.01,forget_weight=10,forget_batch_size=32,remain_batch_size=8,schedule=cosine" \
  "m_lr5e3_w10_24_16_cos=$B,learning_rate=0.005,forget_weight=10,forget_batch_size=24,remain_batch_size=16,schedule=cosine" \
  "m_lr2e3_w10=$C,learning_rate=0.002,forget_weight=10" \
  "m_lr2e3_w30=$C,learning_rate=0.002,forget_weight=30" \
  "m_lr2e3_w100=$C,learning_rate=0.002,forget_weight=100" \
  "m_lr3e3_w30=$C,learning_rate=0.003,forget_weight=30" \
  "m_lr3e3_w100=$C,learning_rate=0.003,forget_weight=100" \
  "m_lr3e3_w3=$C,learning_rate=0.003,forget_weight=3" \
  "m_lr15e4_w30=$C,learning_rate=0.0015,forget_weight=30" \
  "m_sgd_lr1e3_m9_w10=$C,learning_rate=0.001,optimizer=sgd,momentum=0.9,forget_weight=10" \
  "m_lr3e3_w10_noise0=$C,learning_rate=0.003,forget_weight=10,noise=0" \
  "m_lr25e4_w30=$C,learning_rate=0.0025,forget_weight=30" \
  "m_lr2e3_w50=$C,learning_rate=0.002,forget_weight=50" \
  "m_lr3e3_w50=$C,learning_rate=0.003,forget_weight=50" \
  "m_lr2e3_w30_n1=$C,learning_rate=0.002,forget_weight=30,noise=1.0" \
  "m_lr3e3_w30_n1=$C,learning_rate=0.003,forget_weight=30,noise=1.0" \
  "m_lr3e3_w30_r16=$C,learning_rate=0.003,forget_weight=30,remain_batch_size=16" \
  "m_lr4e3_w50=$C,learning_rate=0.004,forget_weight=50" \
  "m_lr5e3_w50=$C,learning_rate=0.005,forget_weight=50" \
  "m_lr15e4_w50=$C,learning_rate=0.0015,forget_weight=50" \
  "m_lr1e3_w100=$C,learning_rate=0.001,forget_weight=100" \
  "m_lr2e3_w10_n1=$C,learning_rate=0.002,forget_weight=10,noise=1.0" \
  "rs50_lr0p003_t1p1=$R,retrain_fraction=0.5,learning_rate=0.003,temperature=1.1" \
  "rs50_lr0p001_t1p0=$R,retrain_fraction=0.5,learning_rate=0.001,temperature=1.0" \
  "rs50_lr0p001_t1p1=$R,retrain_fraction=0.5,learning_rate=0.001,temperature=1.1" \
  "rs50_lr0p001_t1p2=$R,retrain_fraction=0.5,learning_rate=0.001,temperature=1.2" \
  "rs50_lr0p002_t1p1=$R,retrain_fraction=0.5,learning_rate=0.002,temperature=1.1" \
  "rs50_lr0p005_t1p1=$R,retrain_fraction=0.5,learning_rate=0.005,temperature=1.1" \
  "rs2_lr0p1_t1p2=$R,retrain_fraction=0.02,learning_rate=0.1,temperature=1.2" \
  "m_lr3e3_w50_mg=$C,learning_rate=0.003,forget_weight=50,noise_along=margin" \
  "m_lr5e3_w50_mg=$C,learning_rate=0.005,forget_weight=50,noise_along=margin" \
  "m_lr2_w10_mg=$C,learning_rate=0.01,forget_weight=10,noise_along=margin" \
  "m_lr3e3_w50_mg_n1=$C,learning_rate=0.003,forget_weight=50,noise_along=margin,noise=1.0" \
  "m_lr2e3_w10_mg=$C,learning_rate=0.002,forget_weight=10,noise_along=margin" \
  "m_lr3e3_w50_t11=$C,learning_rate=0.003,forget_weight=50,output_temperature=1.1" \
  "m_lr3e3_w50_t12=$C,learning_rate=0.003,forget_weight=50,output_temperature=1.2" \
  "m_k128_lr3e3_w50=$C,teacher_models=128,learning_rate=0.003,forget_weight=50" \
  "m_k128_lr2e3_w10=$C,teacher_models=128,learning_rate=0.002,forget_weight=10" \
  "m_lr2e3_w10_n12=$C,learning_rate=0.002,forget_weight=10,noise=1.2" \
  "m_lr2e3_w10_n15=$C,learning_rate=0.002,forget_weight=10,noise=1.5" \
  "m_lr2e3_w30_n12=$C,learning_rate=0.002,forget_weight=30,noise=1.2" \
  "m_lr15e4_w30_n12=$C,learning_rate=0.0015,forget_weight=30,noise=1.2" \
  "m_lr15e4_w50_n12=$C,learning_rate=0.0015,forget_weight=50,noise=1.2" \
  "m_lr1e3_w100_n12=$C,learning_rate=0.001,forget_weight=100,noise=1.2" \
  "m_lr2e3_w10_head=$C,learning_rate=0.002,forget_weight=10,solve=head" \
  "m_lr3e3_w50_sal=$C,learning_rate=0.003,forget_weight=50,mask=saliency" \
  "m_lr2e3_w10_mw3=$C,learning_rate=0.002,forget_weight=10,margin_weight=3.0" \
  "m_lr2e3_w10_mw10=$C,learning_rate=0.002,forget_weight=10,margin_weight=10.0" \
  "m_lr3e3_w50_mw3=$C,learning_rate=0.003,forget_weight=50,margin_weight=3.0" \
  "m_lr3e3_w50_mw10=$C,learning_rate=0.003,forget_weight=50,margin_weight=10.0" \
  "m_lr15e4_w30_mw10=$C,learning_rate=0.0015,forget_weight=30,margin_weight=10.0" \
  "m_lr15e4_w30_mw30=$C,learning_rate=0.0015,forget_weight=30,margin_weight=30.0" \
  "m_lr1e3_w100_mw10=$C,learning_rate=0.001,forget_weight=100,margin_weight=10.0" \
  "m_lr1e3_w30_mw30=$C,learning_rate=0.001,forget_weight=30,margin_weight=30.0" \
  "m_lr1e3_w30_mw10=$C,learning_rate=0.001,forget_weight=30,margin_weight=10.0" \
  "m_lr15e4_w10_mw30=$C,learning_rate=0.0015,forget_weight=10,margin_weight=30.0" \
  "m_lr2e3_w10_mw30=$C,learning_rate=0.002,forget_weight=10,margin_weight=30.0" \
  "m_lr2e3_w30_mw3=$C,learning_rate=0.002,forget_weight=30,margin_weight=3.0" \
  "m_lr3e3_w10_mw10=$C,learning_rate=0.003,forget_weight=10,margin_weight=10.0" \
  "m_lr3e3_w50_mw1=$C,learning_rate=0.003,forget_weight=50,margin_weight=1.0" \
  "m_lr2e3_w10_mw10_mg=$C,learning_rate=0.002,forget_weight=10,margin_weight=10.0,noise_along=margin" \
  "m_lr3e3_w50_mw3_mg=$C,learning_rate=0.003,forget_weight=50,margin_weight=3.0,noise_along=margin" \
  "m_lr15e4_w30_mw10_mg=$C,learning_rate=0.0015,forget_weight=30,margin_weight=10.0,noise_along=margin" \
  "m_k128_lr3e3_w50_mw3=$C,teacher_models=128,learning_rate=0.003,forget_weight=50,margin_weight=3.0" \
  "m_k128_lr2e3_w30_mw3=$C,teacher_models=128,learning_rate=0.002,forget_weight=30,margin_weight=3.0" \
  "m_k128_lr2e3_w10_mw10=$C,teacher_models=128,learning_rate=0.002,forget_weight=10,margin_weight=10.0" \
  "m_k128_lr15e4_w30_mw10_mg=$C,teacher_models=128,learning_rate=0.0015,forget_weight=30,margin_weight=10.0,noise_along=margin" \
  "m_k128_lr25e4_w30_mw3=$C,teacher_models=128,learning_rate=0.0025,forget_weight=30,margin_weight=3.0" \
  "m_k128_lr2e3_w50_mw3=$C,teacher_models=128,learning_rate=0.002,forget_weight=50,margin_weight=3.0" \
  "m_k128_lr2e3_w30_mw3_n1=$C,teacher_models=128,learning_rate=0.002,forget_weight=30,margin_weight=3.0,noise=1.0" \
  "m_k128_lr3e3_w50_mw3_n1=$C,teacher_models=128,learning_rate=0.003,forget_weight=50,margin_weight=3.0,noise=1.0" \
  "m_k128_lr2e3_w30_mw3_mg=$C,teacher_models=128,learning_rate=0.002,forget_weight=30,margin_weight=3.0,noise_along=margin" \
  "m_k128_lr2e3_w30_mw10=$C,teacher_models=128,learning_rate=0.002,forget_weight=30,margin_weight=10.0" \
  "m_k128_lr15e4_w50_mw3=$C,teacher_models=128,learning_rate=0.0015,forget_weight=50,margin_weight=3.0" \
  "m_k128_lr15e4_w30_mw3=$C,teacher_models=128,learning_rate=0.0015,forget_weight=30,margin_weight=3.0" \
  "m_k128_lr1e3_w50_mw10_mg=$C,teacher_models=128,learning_rate=0.001,forget_weight=50,margin_weight=10.0,noise_along=margin" \
  "m_k128_lr2e3_w30_mw3_pooled=$C,teacher_models=128,learning_rate=0.002,forget_weight=30,margin_weight=3.0,teacher_spread=pooled" \
  "m_k128_lr15e4_w30_mw10_mg_n1=$C,teacher_models=128,learning_rate=0.0015,forget_weight=30,margin_weight=10.0,noise_along=margin,noise=1.0" \
  "m_k256_lr2e3_w30_mw3_mg=$C,teacher_models=256,learning_rate=0.002,forget_weight=30,margin_weight=3.0,noise_along=margin" \
  "m_k256_lr3e3_w50_mw3=$C,teacher_models=256,learning_rate=0.003,forget_weight=50,margin_weight=3.0" \
  "m_k256_lr2e3_w30_mw3=$C,teacher_models=256,learning_rate=0.002,forget_weight=30,margin_weight=3.0" \
  "m_k256_lr15e4_w30_mw10_mg=$C,teacher_models=256,learning_rate=0.0015,forget_weight=30,margin_weight=10.0,noise_along=margin" \
  "m_k256_lr15e4_w50_mw3=$C,teacher_models=256,learning_rate=0.0015,forget_weight=50,margin_weight=3.0" \
  "m_k256_lr2e3_w50_mw3=$C,teacher_models=256,learning_rate=0.002,forget_weight=50,margin_weight=3.0" \
  "m_k256_lr3e3_w50_mw3_mg=$C,teacher_models=256,learning_rate=0.003,forget_weight=50,margin_weight=3.0,noise_along=margin" \
  "m_k256_lr2e3_w30_mw3_os02=$C,teacher_models=256,learning_rate=0.002,forget_weight=30,margin_weight=3.0,overshoot=0.02" \
  "m_k256_lr2e3_w30_mw3_os05=$C,teacher_models=256,learning_rate=0.002,forget_weight=30,margin_weight=3.0,overshoot=0.05" \
  "m_k256_lr2e3_w30_mw3_os10=$C,teacher_models=256,learning_rate=0.002,forget_weight=30,margin_weight=3.0,overshoot=0.1" \
  "m_k256_lr15e4_w50_mw3_os05=$C,teacher_models=256,learning_rate=0.0015,forget_weight=50,margin_weight=3.0,overshoot=0.05" \
  "m_k256_lr15e4_w50_mw3_os10=$C,teacher_models=256,learning_rate=0.0015,forget_weight=50,margin_weight=3.0,overshoot=0.1" \
  "${E[@]}" "$@"
