"""Does the harness reproduce `jaxunlearn audit`'s figures? (configs/quick_audit.py docstring)

    python -m experiments.quality.check_audit --forget random   # seed 0, no held-out split

quick_audit measured (seed 0): memorised D_f: oracle 0.171, none 0.000, lightweight_quick
0.000 (phi median -1.49); random 1%: oracle 0.151, none 0.098, lightweight_quick 0.037.
"""
import argparse
import json

from experiments.quality import lab as lab_lib

if __name__ == "__main__":
  p = argparse.ArgumentParser()
  p.add_argument("--forget", default="random")
  args = p.parse_args()
  lab = lab_lib.Lab(0, args.forget, holdout=0)
  res = lab.evaluate(lab_lib.Candidate("lightweight_quick", "lightweight", kind="baseline"),
                     protocols=("single",), log=False, audit_names=True)
  out = {"oracle_F": lab.eps_oracle["forgetting_quality"],
         "none_F": lab.eps_none["forgetting_quality"],
         "controls": lab.controls(), "lightweight_quick": res["single"]}
  print(json.dumps(out, indent=1))
  lab.close()
