"""The hyper-parameter search of a sweep's ``tune:`` section, the paper's protocol: Ray Tune's
ASHA scheduler over lr and weight decay (log-uniform in [1e-5, 1e-1]) on RFT-fix, and the
best values reused by every run of the grid, the schedule's included.

    tune:
      per: [backbone, dataset]      # one search per combination of these grid axes
      fixed: {schedule.name: fix}   # set during the search only
      space: {optim.lr: [1e-5, 1e-1], optim.weight_decay: [1e-5, 1e-1]}
      metric: val_clean_acc         # per epoch, from validation (val_adv_acc also works)
      samples: 16                   # trials per search
      grace_period: 1               # ASHA: epochs before a trial can be stopped
      reduction_factor: 3
      trial_time_s: 1800            # optional: a trial's time limit (the paper: 30 minutes)

Grid axes not named in ``per`` keep the base config's values during a search. Each trial trains
in a Ray worker (one GPU, or none on a CPU-only cluster) and reports its metric after each
epoch; the best trial's values go to ``<root>/tune/<axes>/best.yaml``, which every run of that
group then loads after its other config files. A search whose best.yaml exists is skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from fastrft.atomic import write_text
from fastrft.config import ConfigError, load_config

from .spec import Search, SweepSpec, TuneSpec, override


def check_searches(spec: SweepSpec) -> dict[str, int]:
    """Load each search's config up front; returns its epochs (ASHA's horizon) by search."""
    assert spec.tune is not None
    epochs = {}
    for search in spec.searches():
        trial = [override(k, lo) for k, lo, _ in spec.tune.space]
        try:
            cfg = load_config(search.files, [*search.overrides, *trial])
        except ConfigError as err:
            raise ConfigError(f"{spec.path}: tune search {search.id}: {err}") from err
        if spec.tune.metric.startswith("val_adv") and not (
            cfg.eval.adv_samples > 0 and cfg.attack.eps > 0
        ):
            raise ValueError(
                f"{spec.path}: tune.metric {spec.tune.metric} needs adversarial validation: "
                "eval.adv_samples > 0 and attack.eps > 0"
            )
        epochs[search.id] = cfg.epochs
    return epochs


def tune_all(spec: SweepSpec, epochs: dict[str, int], gpus: int, console: Console) -> None:
    """Run every search that has no best.yaml yet (Ray must be initialised)."""
    assert spec.tune is not None
    for search in spec.searches():
        if search.best.exists():
            console.print(f"{search.id}: already tuned, {search.best} (delete it to search again)")
            continue
        best, value, iterations = _search(spec.tune, search, epochs[search.id], gpus)
        header = (
            f"best of {spec.tune.samples} ASHA trials ({search.id}, "
            f"{' '.join(spec.tune.fixed) or 'base config'}): {spec.tune.metric} {value:.4f} "
            f"after {iterations} epoch(s); written by `fastrft sweep {spec.path} --tune`"
        )
        write_best(search.best, best, header)
        values = "  ".join(f"{k} {v:.3g}" for k, v in best.items())
        console.print(f"{search.id}: {values}  ({spec.tune.metric} {value:.4f}) -> {search.best}")


def _search(
    t: TuneSpec, search: Search, epochs: int, gpus: int
) -> tuple[dict[str, float], float, int]:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    folder = search.best.parent.resolve()
    trainable = tune.with_parameters(
        _trial,
        files=[str(f) for f in search.files],
        overrides=list(search.overrides),
        trials_dir=str(folder / "trials"),
        metric=t.metric,
    )
    scheduler = ASHAScheduler(
        max_t=epochs,
        grace_period=min(t.grace_period, epochs),
        reduction_factor=t.reduction_factor,
    )
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1, "gpu": gpus}),
        param_space={key: tune.loguniform(lo, hi) for key, lo, hi in t.space},
        tune_config=tune.TuneConfig(
            metric=t.metric, mode=t.mode, num_samples=t.samples, scheduler=scheduler
        ),
        run_config=tune.RunConfig(
            name="asha",
            storage_path=str(folder / "ray"),
            stop={"time_total_s": t.trial_time_s} if t.trial_time_s else None,
            verbose=0,
        ),
    )
    grid = tuner.fit()
    best = grid.get_best_result(metric=t.metric, mode=t.mode, scope="last")
    if best.metrics is None or t.metric not in best.metrics:
        raise RuntimeError(
            f"tune search {search.id}: no trial reported {t.metric}; see the trials' logs in "
            f"{folder / 'ray'}"
        )
    return dict(best.config), best.metrics[t.metric], best.metrics["training_iteration"]


def _trial(
    params: dict[str, Any], files: list[str], overrides: list[str], trials_dir: str, metric: str
) -> None:
    """One trial, in a Ray worker: train, reporting the metric after every epoch (ASHA may
    stop the trial at any report)."""
    from ray import tune

    from fastrft.engine import Trainer

    out_dir = Path(trials_dir) / tune.get_context().get_trial_id()
    cfg = load_config(
        files, [*overrides, *(override(k, v) for k, v in params.items()), f"out_dir={out_dir}"]
    )
    trainer = Trainer(cfg, console=Console(stderr=True, quiet=True), progress=False)
    trainer.fit(on_epoch=lambda record: tune.report({metric: record[metric]}))


def write_best(path: Path, values: dict[str, float], header: str) -> None:
    """The tuned values as a config file (dotted keys nested), written atomically."""
    nested: dict[str, Any] = {}
    for key, value in values.items():
        *parents, leaf = key.split(".")
        node = nested
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = float(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, f"# {header}\n" + yaml.safe_dump(nested, sort_keys=False))
