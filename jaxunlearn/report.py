"""A readable ``results.md`` from the ``results.json`` dict and the sections evaluators render."""

from __future__ import annotations

__all__ = ["results_markdown", "table", "section", "fmt", "MODEL_ORDER"]

MODEL_ORDER = ("original", "retrain", "reference", "unlearned")


def _fmt(v) -> str:
  if isinstance(v, float):
    return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
  return "" if v is None else str(v)


def fmt(v, digits: int = 3) -> str:
  """A figure for a markdown table of the audits: ``digits`` decimals, ``-`` for None."""
  if v is None:
    return "-"
  if isinstance(v, float):
    return f"{v:.{digits}f}"
  return str(v)


def table(header, rows) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def results_markdown(r: dict, sections: list[tuple[str, str]]) -> str:
  """``results.md``: a header, the given ``(title, markdown)`` sections, timing and environment."""
  out = [f"# Unlearning results: {r['setting']}", "",
         f"Dataset `{r['dataset']}`, model `{r['model']}`, method `{r.get('method', '')}`, "
         f"seed {r['seed']}: {r['n_train']} training examples, forget set {r['n_forget']}"
         + (f", reference set {r['n_reference']}" if r.get("n_reference") else "")
         + (" (reused)" if r.get("reference_reused") else "") + ".", ""]
  for title, text in sections:
    out += [f"## {title}", "", text, ""]
  times = r["time_s"]
  out += ["## Time (seconds of device work, compile time apart)", "",
          table(["stage", "run s", "compile s"],
                [[k, v, r["compile_s"].get(k)] for k, v in times.items()]), ""]
  if "speedup" in r:
    out += [f"Speedup over retraining: **{r['speedup']:.2f}x** "
            f"(retrain / (reference + unlearn)); with the reference reused: "
            f"**{r['speedup_amortized']:.1f}x** (retrain / unlearn).", ""]
  cost = r.get("unlearn_cost")
  if cost:
    out += [f"Cost in examples processed (forward and backward = 1, forward only = 1/3): "
            f"{cost['per_request_examples']:.0f} per request (unlearning "
            f"{cost['cost_examples']:.0f}, reference {cost['reference_per_request_examples']:.0f}"
            f"), retraining {cost['retrain_cost_examples']:.0f}: "
            f"**{cost['fraction_of_retrain']:.3f}** of retraining"
            + (f"; the reference reused by every request cost "
               f"{cost['reference_one_off_examples']:.0f} once"
               if cost.get("reference_one_off_examples") else "") + ".", ""]
  env = r.get("environment", {})
  if env:
    out += [f"Run on {env.get('device')} ({env.get('backend')}), jax {env.get('jax')}, "
            f"flax {env.get('flax')}, finished {r.get('finished')}.", ""]
  return "\n".join(out)


def section(d: dict) -> str:
  """A nested ``{model: {figure: value}}`` dict as tables; flat entries as a list.

  Figures named ``group.figure`` go to one table per group, after the table of
  unprefixed figures.
  """
  nested = {k: v for k, v in d.items() if isinstance(v, dict)}
  flat = {k: v for k, v in d.items() if not isinstance(v, dict)}
  parts = []
  if nested:
    keys = sorted({k for v in nested.values() for k, x in v.items() if not isinstance(x, dict)})
    names = [m for m in MODEL_ORDER if m in nested] + [m for m in nested if m not in MODEL_ORDER]
    groups: dict[str, list[str]] = {}
    for k in keys:
      group, _, _ = k.rpartition(".")
      groups.setdefault(group, []).append(k)
    for group in sorted(groups, key=lambda g: (g != "", g)):
      cols = groups[group]
      header = [group or "", *(c.rpartition(".")[2] for c in cols)]
      parts.append(table(header, [[m, *(nested[m].get(k) for k in cols)] for m in names]))
  if flat:
    parts.append("\n".join(f"- {k}: {_fmt(v)}" for k, v in flat.items()))
  return "\n\n".join(parts)
