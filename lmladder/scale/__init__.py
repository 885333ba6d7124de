"""`lmladder scale`: predict a GPT's loss before training it, from a sweep of small ones.

As the GPT-4 report predicted its final loss from runs of up to 10,000x less compute: train a
grid of small GPTs (model sizes x compute budgets) with one recipe, fit L(C) = E + A C^-alpha on
the compute frontier and L(N, D) = E + A / N^alpha + B / D^beta over every run, and extrapolate.

    plan.py    the family of shapes, the recipe (learning rate and batch from compute), the
               grid, and how parameters and FLOPs are counted
    sweep.py   each run trained through lmladder.train, cached and resumable
    fit.py     the two laws, fitted as Chinchilla's approach 3, bootstrap intervals, the
               compute-optimal size
    study.py   the study from start to end: check, plan, train, fit, predict, verify
    report.py  results.json, runs.parquet, scale.md and the figures

    from lmladder.scale import Study, report, run
    result = run(Study("tinyshakespeare", target_flops=3e12, verify=True))
    report.write_outputs(result, "runs/scale")
"""

from lmladder.scale.study import Study, run

__all__ = ["Study", "run"]
