"""Theory as an advisor (issue 28): rank fine-tuning configurations by predicted robustness before
training them, and measure on stored runs how well that ranking predicts.

- `predictors`: the registered predictors — the paper's θ₀ quantities (M′, Eqs. 16–17, NTK trace,
  Fisher, IB) and the cheap baselines a skeptic tries first (trainable parameters, the update norm
  and the poisoned-example loss after k probe steps, the attack rate);
- `probe`: computes every predictor for one configuration on a probe batch (one model load);
- `targets`: the measured harm of an attack family, read from stored training runs;
- `calibrate`: held-out fits (leave one configuration out), Spearman ρ with bootstrap intervals;
- `candidates`: the configurations to rank (a spec or a small command-line grid).

Reading this package's public names imports no torch: `probe` imports it when called.
"""
