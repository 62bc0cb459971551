#!/bin/bash
# The final figures: seeds 0, 1, 2 (memorised, random and backdoored forget sets), both
# protocols, the chosen method (isr) and every baseline; U-LiRA on the memorised and
# backdoored sets. Run from the repository root:  bash experiments/quality/run_final.sh
set -x
PY="nice -n 10 .venv/bin/python -m experiments.quality.evaluate"
B=lightweight,finetune,neggrad_plus,scrub,salun,random_label,l1_sparse,bad_teacher,gradient_ascent
for s in 0 1 2; do
  $PY --seed $s --forget flip --cands isr,$B --note final
  $PY --seed $s --forget flip --cands isr,lightweight,scrub --protocols "" --ulira --note final
  $PY --seed $s --forget random --cands isr,noise05,$B --note final
  $PY --seed $s --forget backdoor --cands isr,$B --note final
  $PY --seed $s --forget backdoor --cands isr --protocols "" --ulira --note final
done
echo FINAL_DONE
