import sys, json
KEYS = ('label','protocol','F','relF_vs_oracle32','spread_ratio','phi_median','absz_median','absz_mean_of_runs_median','z_median','test_gap','retain_acc','wall_s')
for l in sys.stdin:
  try: d = json.loads(l)
  except Exception: continue
  print(" ".join(f"{k}={d[k]:.3f}" if isinstance(d.get(k), float) else f"{k}={d.get(k)}" for k in KEYS if k in d))
