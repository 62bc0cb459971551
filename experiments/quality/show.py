import sys, json


def main():
  KEYS = ('label','protocol','F','relF_vs_oracle32','spread_ratio','phi_median','absz_median','absz_mean_of_runs_median','z_median','test_gap','retain_acc','cal_wrong_z_median','cal_wrong_absz_median','cal_true_z_median','wall_s')
  for l in sys.stdin:
    try: d = json.loads(l)
    except Exception: continue
    print(" ".join(f"{k}={d[k]:.3f}" if isinstance(d.get(k), float) else f"{k}={d.get(k)}" for k in KEYS if k in d))


if __name__ == "__main__":
  main()
