"""How the paper evaluates: accuracy under attack over a grid of budgets, expected robustness,
and the delay time of a validation curve.

Expected robustness is accuracy averaged over budgets drawn uniformly from [0, eps_g],

    E.adv = (1 / eps_g) * integral_0^eps_g Acc_eps d eps,

estimated with the trapezoidal rule on a grid of step 1/255 under APGD-CE (10 steps, l_inf).

:func:`accuracy_curve` measures Acc_eps at every budget of the grid in one pass over the
batches: each image is repeated once per budget, each copy carries its own eps (the attacks
take a per-sample eps), and each copy's correctness is counted for its budget. Budgets of 0
are clean predictions, never attacked. That is ``strategy="all"``: G attacked budgets cost G
attacks per image. ``strategy="bisect"`` finds instead, for each image, the smallest budget of
the sorted grid at which the attack succeeds, by bisection: each round is one attack over the
batch, each image at the midpoint of its own interval (a per-sample eps, the same batch shape
every round), so G budgets cost ceil(log2(G + 1)) attacks per image (5 for 16). Budget k's
accuracy is then the share of images correct on x whose smallest successful budget is above
k: monotone by construction, and equal to "all"'s wherever the attack's success is monotone in
eps for every image (it need not be: a larger ball is a different search). As in AutoAttack, a
sample counts as robust at a budget only if it is also correct on its clean image: a point near
x that the model gets right does not make up for x itself (gradient masking can hide exactly
there). Models are evaluated in eval mode, with their mode and parameters' requires_grad
restored afterwards; inputs are pixels in [0, 1] and are moved to the device of the model's
first parameter.

Reproducible numbers: each image's random start is keyed by (``seed``, the image's index in the
evaluation set), never by its place in a batch, so a curve does not depend on the batch size,
on ``max_batch``, on the strategy's batching, or on how many processes share the set (each
evaluates a contiguous shard from ``first_index`` and ``sum_across`` adds up the counts); an
image also draws the same unit noise at every budget, so "bisect" attacks an (image, budget)
pair exactly as "all" does. torch's generators are forked, so the caller's stream is left as it
was; ``precision`` fixes the arithmetic whatever autocast surrounds the call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from fastrft import attack_registry
from fastrft.attack_registry import PEER_NORMS, canonical_norm
from fastrft.attacks import attack_mode
from fastrft.attacks.core import logits_of
from fastrft.budgets import CURVE_STRATEGIES, eps_grid, whole_steps

if TYPE_CHECKING:
    from fastrft.config import RunConfig

__all__ = [
    "Curve",
    "accuracy_curve",
    "autoattack_accuracy",
    "clean_accuracy",
    "delay_time",
    "eps_grid",
    "expected_robustness",
    "measure_curve",
    "paper_metrics",
    "precision_context",
    "robust_accuracy",
    "seeded",
]

Batches = Iterable[tuple[Tensor, Tensor]]
# called with (done, total) as each unit of a long evaluation ends; total None: unknown
OnProgress = Callable[[int, int | None], None]
AttackName = str  # an evaluation attack of fastrft.attack_registry
Precision = Literal["fp32", "bf16"]
Strategy = Literal["all", "bisect"]
AttackRun = Callable[..., Tensor]  # (model, x, y, eps) -> x_adv


@dataclasses.dataclass(frozen=True)
class Curve:
    """An accuracy-vs-eps curve over ``samples`` images and what it cost. ``attack_calls``:
    calls of the attack function; ``gradient_passes``: forward+backward passes of the model
    over the rows of one call, ``steps`` per call (apgd adds one forward-only pass per call);
    with the default ``max_batch`` every call is one evaluation batch, so both strategies count
    in batches. All three are summed over the processes that shared the set."""

    accuracies: list[float]
    strategy: Strategy
    attack_calls: int
    gradient_passes: int
    samples: int


@dataclasses.dataclass
class Spent:
    """Attack calls made so far."""

    calls: int = 0

    def counting(self, run: AttackRun) -> AttackRun:
        """``run``, counting its calls here."""

        def counted(*args: Any, **kwargs: Any) -> Tensor:
            self.calls += 1
            return run(*args, **kwargs)

        return counted


def expected_robustness(eps_grid: Sequence[float], accuracies: Sequence[float]) -> float:
    """E.adv: the trapezoidal integral of ``accuracies`` over ``eps_grid``, divided by eps_g.

    ``eps_grid`` must start at 0 (clean accuracy) and increase strictly; it may be uneven.
    eps_g is its last point. A one-point grid [0] is the Dirac at 0: clean accuracy.
    """
    grid = [float(e) for e in eps_grid]
    acc = [float(a) for a in accuracies]
    if not grid:
        raise ValueError("eps_grid is empty; pass at least [0.0] (see eps_grid())")
    if len(acc) != len(grid):
        raise ValueError(
            f"accuracies has {len(acc)} values but eps_grid has {len(grid)} points; "
            "pass one accuracy per budget"
        )
    if grid[0] != 0:
        raise ValueError(f"eps_grid must start at 0 (clean accuracy), got {grid[0]!r} first")
    if not all(math.isfinite(e) for e in grid):
        raise ValueError(f"eps_grid must hold finite budgets, got {grid}")
    if any(b <= a for a, b in itertools.pairwise(grid)):
        raise ValueError(f"eps_grid must increase strictly, got {grid}")
    if not all(math.isfinite(a) for a in acc):
        raise ValueError(f"accuracies must be finite, got {acc}")
    if len(grid) == 1:
        return acc[0]
    area = sum(
        (e1 - e0) * (a0 + a1) / 2
        for (e0, e1), (a0, a1) in zip(
            itertools.pairwise(grid), itertools.pairwise(acc), strict=True
        )
    )
    return area / grid[-1]


def clean_accuracy(model: nn.Module, batches: Batches) -> float:
    """Top-1 accuracy of ``model`` in eval mode over ``batches`` of (x, y)."""
    device = model_device(model)
    correct, total = torch.zeros((), dtype=torch.int64, device=device), 0
    with attack_mode(model, "eval"):
        for x, y in batches:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            correct += predict_correct(model, x, y).sum()
            total += len(y)
    return ratio(correct, total)[0]


def robust_accuracy(
    model: nn.Module,
    batches: Batches,
    eps: float,
    attack: AttackName = attack_registry.DEFAULT,
    steps: int = 10,
    norm: str = "linf",
    attack_kwargs: dict[str, Any] | None = None,
    *,
    seed: int | None = None,
    precision: Precision = "fp32",
) -> float:
    """Accuracy under ``attack`` at budget ``eps`` (clean accuracy at eps = 0): the share of
    samples correct both on x and at the attack's point.

    ``attack_kwargs`` go to the attack (e.g. random_start, backend). The paper's Adv is
    ``robust_accuracy(model, batches, eps_g)``: APGD-CE, 10 steps, l_inf. ``seed`` and
    ``precision`` as for :func:`accuracy_curve`.
    """
    curve = accuracy_curve(
        model,
        batches,
        [eps],
        attack,
        steps,
        norm,
        attack_kwargs=attack_kwargs,
        seed=seed,
        precision=precision,
    )
    return curve[0]


def accuracy_curve(
    model: nn.Module,
    batches: Batches,
    grid: Sequence[float],
    attack: AttackName = attack_registry.DEFAULT,
    steps: int = 10,
    norm: str = "linf",
    max_batch: int | None = None,
    attack_kwargs: dict[str, Any] | None = None,
    *,
    strategy: Strategy = "all",
    seed: int | None = None,
    precision: Precision = "fp32",
    progress: OnProgress | None = None,
) -> list[float]:
    """Accuracy under ``attack`` at every budget of ``grid``, in one pass over ``batches``:
    :func:`measure_curve`'s accuracies."""
    return measure_curve(
        model,
        batches,
        grid,
        attack,
        steps,
        norm,
        max_batch,
        attack_kwargs,
        strategy=strategy,
        seed=seed,
        precision=precision,
        progress=progress,
    ).accuracies


def measure_curve(
    model: nn.Module,
    batches: Batches,
    grid: Sequence[float],
    attack: AttackName = attack_registry.DEFAULT,
    steps: int = 10,
    norm: str = "linf",
    max_batch: int | None = None,
    attack_kwargs: dict[str, Any] | None = None,
    *,
    strategy: Strategy = "all",
    seed: int | None = None,
    precision: Precision = "fp32",
    progress: OnProgress | None = None,
    first_index: int = 0,
    sum_across: Callable[[Tensor], Tensor] | None = None,
) -> Curve:
    """Accuracy under ``attack`` at every budget of ``grid``, in one pass over ``batches``,
    with the attack calls and gradient passes it took.

    ``strategy`` "all": each batch of B images is repeated once per non-zero budget and the
    copies are attacked with a per-copy eps, at most ``max_batch`` copies per attack call: by
    default B, so memory stays that of one batch whatever the grid; a larger ``max_batch`` (up
    to B * G) makes fewer, larger calls. "bisect": ceil(log2(G + 1)) rounds per batch for G
    distinct non-zero budgets, each one attack of the B images (``max_batch`` rows at a time,
    if smaller) at per-image budgets; see the module's docstring. pgd steps 2.5 * eps / steps
    for each copy. A copy counts as correct only if its clean image is correct too. ``seed``
    (None: torch's current stream) fixes the random starts; ``precision`` is fp32 (autocast
    off, even inside an autocast region) or bf16 (autocast). ``grid`` need not start at 0 or be
    sorted; pass it with the result to :func:`expected_robustness` when it starts at 0.
    ``progress`` is called after each batch with the count done and the batch count (None for
    batches without a length).

    Several processes evaluate one set together by each passing its contiguous shard as
    ``batches``, the index of the shard's first image in the set as ``first_index``, the same
    ``seed``, and ``sum_across`` (e.g. an all-reduce sum over the processes), which adds up the
    int64 counts of every process before the accuracies are taken: the curve is then the one a
    single process makes of the whole set. Without ``seed``, the random starts' key is drawn
    from torch's current stream.
    """
    device = model_device(model)
    eps = torch.tensor(check_budgets(grid), dtype=torch.float32, device=device)
    if strategy not in CURVE_STRATEGIES:
        raise ValueError(f"strategy must be 'all' or 'bisect', got {strategy!r}")
    check_count("first_index", first_index, 0)
    if max_batch is not None:
        check_count("max_batch", max_batch, 1, " or None (the batch size)")
    spent = Spent()
    attack_run = attack_fn(attack, steps, norm, attack_kwargs)
    clean, attacked = (eps == 0).nonzero().flatten(), eps.nonzero().flatten()
    per_budget = correct_per_budget if strategy == "all" else bisected_correct_per_budget
    correct, total = torch.zeros_like(eps, dtype=torch.int64), 0
    count = len(batches) if isinstance(batches, Sized) else None
    with seeded(seed, device), precision_context(precision, device), attack_mode(model, "eval"):
        run = spent.counting(functools.partial(attack_run, seed=start_key(device)))
        for done, (x, y) in enumerate(batches, 1):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            ids = torch.arange(len(y), device=device) + (first_index + total)
            clean_ok = predict_correct(model, x, y)
            correct[clean] += clean_ok.sum()
            if len(attacked):
                chunk = max_batch or len(y)
                correct[attacked] += per_budget(
                    model, x, y, ids, clean_ok, eps[attacked], run, chunk
                )
            total += len(y)
            if progress is not None:
                progress(done, count)
    counts = torch.cat([correct, torch.tensor([total, spent.calls], device=device)])
    if sum_across is not None:
        counts = sum_across(counts)
    *correct_all, total_all, calls = counts.tolist()
    if total_all == 0:
        raise ValueError("batches is empty: nothing to evaluate")
    accuracies = [c / total_all for c in correct_all]
    return Curve(accuracies, strategy, calls, calls * steps, total_all)


def start_key(device: torch.device) -> Tensor:
    """The key every random start of one evaluation shares, drawn from torch's current stream
    (seeded by :func:`seeded`), as the one-element int64 tensor the attacks take as ``seed``."""
    return torch.randint(0, 2**62, (1,), dtype=torch.int64).to(device)


def check_count(name: str, value: Any, least: int, alternative: str = "") -> None:
    """ValueError unless ``value`` is an int (not a bool) >= ``least``; ``alternative`` names
    what else the argument may be."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ValueError(f"{name} must be an int >= {least}{alternative}, got {value!r}")


def correct_per_budget(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    ids: Tensor,
    clean_ok: Tensor,
    eps: Tensor,
    run: AttackRun,
    chunk: int,
) -> Tensor:
    """How many of the B images stay correct at each budget of ``eps`` (G,), counting only
    those correct on x (``clean_ok``): the B * G copies, copy i being image i % B at budget
    i // B, attacked ``chunk`` copies at a time, each copy's random start keyed by its image's
    id in ``ids``."""
    b, g = len(y), len(eps)
    counts = torch.zeros(g, dtype=torch.int64, device=y.device)
    for start in range(0, b * g, chunk):
        copy = torch.arange(start, min(start + chunk, b * g), device=y.device)
        image, budget = copy % b, copy // b
        x_adv = run(model, x[image], y[image], eps[budget], ids=ids[image])
        robust = clean_ok[image] & predict_correct(model, x_adv, y[image])
        counts.index_add_(0, budget, robust.long())
    return counts


def bisect_rounds(budgets: int) -> int:
    """Attacks per image that bisection needs over ``budgets`` sorted non-zero budgets:
    ceil(log2(budgets + 1)), the outcomes being "first broken at budget k" or "never"."""
    return budgets.bit_length()


def bisected_correct_per_budget(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    ids: Tensor,
    clean_ok: Tensor,
    eps: Tensor,
    run: AttackRun,
    chunk: int,
) -> Tensor:
    """:func:`correct_per_budget` by bisection: per image, the smallest budget of ``eps`` at
    which the attack succeeds (index G when none does), found in :func:`bisect_rounds` rounds of
    one attack over the B images; correct at a budget below that one. An image whose answer is
    known (misclassified clean, or its interval closed) is attacked at eps 0 and its outcome
    ignored: the batch keeps its shape, and the count of passes stays what the rounds cost."""
    sorted_eps, rank = eps.unique(sorted=True, return_inverse=True)
    g = len(sorted_eps)
    lo = torch.zeros_like(y, dtype=torch.int64)  # the answer lies in [lo, hi]
    hi = torch.full_like(lo, g)
    for _ in range(bisect_rounds(g)):
        open_ = clean_ok & (lo < hi)
        mid = (lo + hi) // 2  # < hi <= g wherever open
        budget = torch.where(open_, sorted_eps[mid.clamp(max=g - 1)], 0.0)
        broken = ~correct_under(model, x, y, ids, budget, run, chunk)
        hi = torch.where(open_ & broken, mid, hi)
        lo = torch.where(open_ & ~broken, mid + 1, lo)
    first_broken = hi  # == lo for every image correct on x
    robust = clean_ok[:, None] & (first_broken[:, None] > rank[None, :])
    return robust.sum(0)


def correct_under(
    model: nn.Module, x: Tensor, y: Tensor, ids: Tensor, eps: Tensor, run: AttackRun, chunk: int
) -> Tensor:
    """Per image: correct at the attack's point with its own budget ``eps`` (B,) and its random
    start keyed by ``ids`` (B,), attacked ``chunk`` images at a time."""
    rows = zip(*(t.split(chunk) for t in (x, y, ids, eps)), strict=True)
    return torch.cat(
        [predict_correct(model, run(model, xs, ys, es, ids=ks), ys) for xs, ys, ks, es in rows]
    )


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Draw from torch's generators (CPU, and ``device``'s if CUDA) seeded with ``seed``, and
    give them back as they were afterwards; None leaves them alone."""
    if seed is None:
        yield
        return
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda, device_type=device.type):
        torch.manual_seed(seed)
        yield


def precision_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """fp32: autocast off (inside an autocast region too); bf16: bf16 autocast."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def delay_time(val_accuracies: Sequence[float], threshold: float = 0.05) -> int | None:
    """The first (0-based) epoch whose validation accuracy exceeds ``threshold`` (the paper's
    5%), or None if none does: how long the robust loss delayed task adaptation."""
    return next((epoch for epoch, acc in enumerate(val_accuracies) if acc > threshold), None)


def attack_fn(
    attack: str, steps: int, norm: str, attack_kwargs: dict[str, Any] | None
) -> AttackRun:
    """``attack`` as a function of (model, x, y, eps), checked before any batch is read. A
    default step size (pgd's) follows each copy's own budget."""
    choices = attack_registry.names("evaluation")
    if attack not in choices:
        raise ValueError(f"attack must be one of {sorted(choices)}, got {attack!r}")
    check_count("steps", steps, 1)
    kwargs = dict(attack_kwargs or {})
    if "alpha" in kwargs:
        raise ValueError(
            "attack_kwargs must not set alpha: one step size cannot suit every budget; "
            "pgd steps 2.5 * eps / steps for each budget"
        )
    spec = attack_registry.ATTACKS[attack]
    return functools.partial(
        spec.run(), **spec.settings(norm=canonical_norm(norm), steps=steps), **kwargs
    )


def check_budgets(grid: Sequence[float]) -> list[float]:
    """``grid`` as a list of floats, each finite and >= 0."""
    budgets = [float(e) for e in grid]
    if not budgets:
        raise ValueError("grid is empty; pass budgets such as eps_grid(8/255)")
    bad = [e for e in budgets if not 0 <= e < math.inf]
    if bad:
        raise ValueError(f"grid must hold finite budgets >= 0, got {bad}")
    return budgets


def model_device(model: nn.Module) -> torch.device:
    """Where the model's first parameter lives (the CPU for a model without parameters)."""
    param = next(model.parameters(), None)
    return torch.device("cpu") if param is None else param.device


@torch.no_grad()
def predict_correct(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Per sample: whether the model's top-1 prediction is the label."""
    return logits_of(model(x), len(x)).argmax(1) == y


def ratio(correct: Tensor, total: int) -> list[float]:
    """correct / total as floats, read from the device once."""
    if total == 0:
        raise ValueError("batches is empty: nothing to evaluate")
    return (correct.double() / total).reshape(-1).tolist()


def autoattack_accuracy(
    model: nn.Module, batches: Batches, eps: float, norm: str = "linf", batch_size: int = 256
) -> float:
    """Accuracy under the standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square) at ``eps``,
    through its own package (``pip install pyautoattack``): a peer's verdict, hours on a
    large set, so only for checks."""
    try:
        from pyautoattack import AutoAttack
    except ImportError as err:
        raise ValueError(
            "AutoAttack is not installed: pip install 'fastrft[autoattack]' "
            "(the pyautoattack package)"
        ) from err
    if eps == 0:
        return clean_accuracy(model, batches)
    device = model_device(model)
    xs, ys = zip(*((x.to(device), y.to(device)) for x, y in batches), strict=True)
    x, y = torch.cat(xs), torch.cat(ys)
    norm = PEER_NORMS[canonical_norm(norm)]
    with attack_mode(model, "eval"):
        adversary = AutoAttack(model, norm=norm, eps=eps, version="standard", device=device)
        x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
        robust = predict_correct(model, x, y) & predict_correct(model, x_adv, y)
        return ratio(robust.sum(), len(y))[0]


def paper_metrics(
    model: nn.Module,
    batches: Any,
    cfg: RunConfig,
    autoattack: bool = False,
    progress: OnProgress | None = None,
    *,
    first_index: int = 0,
    sum_across: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Any]:
    """The paper's numbers for a run's model on ``batches`` (a loader with ``num_samples``),
    as the run's config asks: the accuracy-vs-eps curve up to eval.eps_max, clean accuracy,
    Adv at attack.eps and E.adv up to it, with what makes them reproducible (attack, steps,
    precision, seed, sample count) and how they were searched (eval.strategy, and the attack
    calls and gradient passes it took; None under AutoAttack). The trainer's results.json and
    `fastrft eval` both come from here, so the same checkpoint gives the same curve in both.
    ``autoattack``: the curve under AutoAttack instead, one run per budget. ``progress`` counts
    the batches, or under AutoAttack the budgets (see :func:`accuracy_curve`). ``first_index``
    and ``sum_across``: ``batches`` is one process's shard of a shared evaluation (see
    :func:`measure_curve`); AutoAttack evaluates in one process only."""
    e, norm, eps_g = cfg.eval, cfg.attack.norm, cfg.attack.eps
    eps_max, step = cfg.eval_grid()
    grid = eps_grid(eps_max, step)
    if autoattack:
        if sum_across is not None:
            raise ValueError("AutoAttack evaluates in one process: run it without torchrun")
        samples = batches.num_samples
        curve = []
        for eps in grid:
            curve.append(autoattack_accuracy(model, batches, eps, norm))
            if progress is not None:
                progress(len(curve), len(grid))
        how = {"attack": "autoattack", "steps": None, "precision": "fp32", "seed": None}
        cost = {"strategy": "all", "attack_calls": None, "gradient_passes": None}
    else:
        measured = measure_curve(
            model,
            batches,
            grid,
            e.attack,
            e.steps,
            norm,
            strategy=e.strategy,
            seed=cfg.eval_seed(),
            precision=e.precision,
            progress=progress,
            first_index=first_index,
            sum_across=sum_across,
        )
        curve, samples = measured.accuracies, measured.samples
        how = {
            "attack": e.attack,
            "steps": e.steps,
            "precision": e.precision,
            "seed": cfg.eval_seed(),
        }
        cost = {
            "strategy": measured.strategy,
            "attack_calls": measured.attack_calls,
            "gradient_passes": measured.gradient_passes,
        }
    upto = whole_steps(eps_g, step) + 1  # attack.eps is on the grid: the config checks it
    return {
        "clean_acc": curve[0],
        "adv_acc": curve[upto - 1],
        "expected_robustness": expected_robustness(grid[:upto], curve[:upto]),
        "eps": eps_g,
        "norm": norm,
        "eps_grid": grid,
        "accuracy_curve": curve,
        **how,
        **cost,
        "num_samples": samples,
    }
