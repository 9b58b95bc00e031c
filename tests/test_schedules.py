"""Epsilon schedules against the paper's formulas, epoch by epoch (0-based epochs)."""

import itertools
import math

import pytest

from fastrft.schedules import SCHEDULES, Schedule, make_schedule, register

EPS = 4 / 255
EPOCHS = 50


def paper_a(t: float, t1: float, t2: float) -> float:
    """PAPER.md's two-hinge a(t), written out case by case."""
    if t < t1:
        return 0.0
    if t < t2:
        return (t - t1) / (t2 - t1)
    return 1.0


def values(sched: Schedule, epochs: int = EPOCHS) -> list[float]:
    return [sched(e) for e in range(epochs)]


def assert_values(actual: list[float], expected: list[float], what: str) -> None:
    bad = [
        (e, a, x)
        for e, (a, x) in enumerate(zip(actual, expected, strict=True))
        if not math.isclose(a, x, rel_tol=1e-12, abs_tol=1e-15)
    ]
    assert not bad, f"{what}: {len(bad)} epochs differ, first (epoch, got, expected): {bad[0]}"


def test_all_schedules_registered():
    assert set(SCHEDULES) >= {"fix", "hinge", "linear", "step", "cosine", "uniform", "auto"}
    for name, cls in SCHEDULES.items():
        assert cls.name == name and issubclass(cls, Schedule)


# ---- hinge and its special cases


def test_hinge_matches_the_paper_at_every_epoch():
    sched = make_schedule("hinge", eps=EPS, epochs=EPOCHS, t1=12, t2=37)
    assert_values(values(sched), [EPS * paper_a(e, 12, 37) for e in range(EPOCHS)], "hinge")
    assert sched(11) == 0.0 and sched(12) == 0.0, "the ramp starts from 0 at T1 = 12"
    assert sched(13) == pytest.approx(EPS / 25)
    assert sched(36) == pytest.approx(EPS * 24 / 25)
    assert sched(37) == EPS and sched(49) == EPS


def test_hinge_defaults_are_the_papers():
    sched = make_schedule("hinge", eps=EPS, epochs=50)
    assert (sched.t1, sched.t2) == (12, 37)
    assert sched.describe() == "hinge eps=4/255 t1=12 t2=37"


@pytest.mark.parametrize(
    "epochs, t1, t2", [(100, 24, 74), (10, 2, 7), (20, 5, 15), (3, 1, 2), (1, 0, 1)]
)
def test_hinge_defaults_scale_with_the_run(epochs, t1, t2):
    sched = make_schedule("hinge", eps=EPS, epochs=epochs)
    assert (sched.t1, sched.t2) == (t1, t2), "0.24 and 0.74 of the run, rounded half up"


@pytest.mark.parametrize(
    "special, hinge_times",
    [
        (dict(name="fix"), (0, 0)),
        (dict(name="linear"), (0, 50)),
        (dict(name="linear", t2=30), (0, 30)),
        (dict(name="step", t1=12), (12, 12)),
        (dict(name="step", t1=25), (25, 25)),
    ],
    ids=["T1=T2=0 is fix", "T1=0<T2=50 linear", "T1=0<T2=30 linear", "step 12", "step 25"],
)
def test_special_cases_of_the_hinge(special, hinge_times):
    special = dict(special)
    sched = make_schedule(special.pop("name"), eps=EPS, epochs=EPOCHS, **special)
    hinge = make_schedule("hinge", eps=EPS, epochs=EPOCHS, t1=hinge_times[0], t2=hinge_times[1])
    expected = [EPS * paper_a(e, *hinge_times) for e in range(EPOCHS)]
    assert_values(values(sched), expected, sched.describe())
    assert_values(values(hinge), expected, hinge.describe())


def test_fix_is_full_budget_always():
    sched = make_schedule("fix", eps=EPS, epochs=3)
    assert values(sched, 5) == [EPS] * 5
    assert sched.describe() == "fix eps=4/255"


def test_linear_defaults_end_with_the_run():
    sched = make_schedule("linear", eps=EPS, epochs=EPOCHS)
    assert (sched.t1, sched.t2) == (0, EPOCHS)
    assert sched(0) == 0.0 and sched(49) == pytest.approx(EPS * 49 / 50)


def test_step_switches_once():
    sched = make_schedule("step", eps=EPS, epochs=EPOCHS, t1=20)
    assert values(sched) == [0.0] * 20 + [EPS] * 30
    assert make_schedule("step", eps=EPS, epochs=EPOCHS, t2=20).t1 == 20
    assert make_schedule("step", eps=EPS, epochs=EPOCHS).t1 == 12


def test_cosine_follows_its_formula():
    sched = make_schedule("cosine", eps=EPS, epochs=EPOCHS)
    assert (sched.t1, sched.t2) == (12, 37)
    expected = [
        0.0 if e < 12 else 1.0 if e >= 37 else (1 - math.cos(math.pi * (e - 12) / 25)) / 2
        for e in range(EPOCHS)
    ]
    assert_values(values(sched), [EPS * a for a in expected], "cosine")
    a = [v / EPS for v in values(sched)]
    assert all(x <= y for x, y in itertools.pairwise(a)), "non-decreasing"
    # symmetric about the middle of the ramp, slower than the hinge at the start
    assert all(math.isclose(a[12 + k] + a[37 - k], 1.0) for k in range(26))
    hinge = make_schedule("hinge", eps=EPS, epochs=EPOCHS)
    assert sched(14) < hinge(14) and sched(35) > hinge(35)


# ---- times as fractions


def test_float_times_are_fractions_of_the_run():
    sched = make_schedule("hinge", eps=EPS, epochs=EPOCHS, t1=0.25, t2=1.0)
    assert (sched.t1, sched.t2) == (13, 50), "12.5 rounds half up; 1.0 is the end of the run"
    assert make_schedule("hinge", eps=EPS, epochs=EPOCHS, t1=0.0, t2=0.5).t2 == 25


def test_int_is_always_epochs():
    as_int = make_schedule("hinge", eps=EPS, epochs=EPOCHS, t1=0, t2=1)
    as_float = make_schedule("hinge", eps=EPS, epochs=EPOCHS, t1=0, t2=1.0)
    assert as_int.t2 == 1 and as_float.t2 == EPOCHS


# ---- per step


def test_per_step_interpolates_within_epochs():
    spe = 10
    sched = make_schedule("hinge", eps=EPS, epochs=EPOCHS, per_step=True, steps_per_epoch=spe)
    per_epoch = make_schedule("hinge", eps=EPS, epochs=EPOCHS)
    assert all(sched(e, 0) == per_epoch(e) == sched(e) for e in range(EPOCHS))
    assert sched(12, 5) == pytest.approx(EPS * 0.5 / 25), "t = 12.5"
    assert sched(36, 9) == pytest.approx(EPS * 24.9 / 25), "t = 36.9"
    trajectory = [sched(e, s) for e in range(EPOCHS) for s in range(spe)]
    assert all(x <= y for x, y in itertools.pairwise(trajectory))
    ramp = [sched(e, s) for e in range(12, 37) for s in range(spe)]
    assert all(x < y for x, y in itertools.pairwise(ramp)), "rises at every step"


def test_per_step_cosine_rises_at_every_step():
    sched = make_schedule("cosine", eps=EPS, epochs=20, per_step=True, steps_per_epoch=7)
    ramp = [sched(e, s) for e in range(sched.t1, sched.t2) for s in range(7)]
    assert all(x < y for x, y in itertools.pairwise(ramp))


def test_step_is_ignored_without_per_step():
    sched = make_schedule("hinge", eps=EPS, epochs=EPOCHS, steps_per_epoch=10)
    assert sched(20, 7) == sched(20)


# ---- uniform


def test_uniform_is_seeded_in_range_and_varies():
    a = values(make_schedule("uniform", eps=EPS, epochs=EPOCHS, seed=3))
    b = values(make_schedule("uniform", eps=EPS, epochs=EPOCHS, seed=3))
    c = values(make_schedule("uniform", eps=EPS, epochs=EPOCHS, seed=4))
    assert a == b, "same seed, same draws"
    assert a != c, "another seed, other draws"
    assert all(0 <= v <= EPS for v in a)
    assert len(set(a)) == EPOCHS, "a new draw each epoch"
    assert 0.3 * EPS < sum(a) / EPOCHS < 0.7 * EPS, "mean near eps / 2"


def test_uniform_needs_no_state_to_resume():
    sched = make_schedule("uniform", eps=EPS, epochs=EPOCHS, seed=1)
    late = sched(37)
    fresh = make_schedule("uniform", eps=EPS, epochs=EPOCHS, seed=1)
    assert fresh(37) == late, "epoch 37 drawn without visiting epochs 0..36"
    assert sched.state_dict() == {}


def test_uniform_per_step_draws_each_step():
    sched = make_schedule("uniform", eps=EPS, epochs=5, per_step=True, steps_per_epoch=20)
    draws = [sched(2, s) for s in range(20)]
    assert len(set(draws)) == 20 and all(0 <= v <= EPS for v in draws)


# ---- auto

# validation accuracy that climbs, then creeps: best of epochs 6..10 is 0.672, best of
# epochs 0..5 is 0.66, so epoch 10 is the first converged one (epoch 9: 0.671 - 0.65 > 0.02)
CURVE = [0.10, 0.30, 0.50, 0.60, 0.65, 0.66, 0.665, 0.67, 0.67, 0.671, 0.672]
CURVE += [0.68] * 9


def run_auto(sched: Schedule, curve: list[float], start: int = 0) -> list[float]:
    """The engine's loop: the budget for each epoch, then its validation fed back."""
    used = []
    for epoch in range(start, len(curve)):
        used.append(sched(epoch))
        sched.observe(epoch, curve[epoch])
    return used


def test_auto_waits_for_convergence_then_ramps_to_the_last_epoch():
    sched = make_schedule("auto", eps=EPS, epochs=20)
    used = run_auto(sched, CURVE)
    assert sched.switch_epoch == 10
    expected = [0.0] * 11 + [EPS * (e - 10) / 9 for e in range(11, 20)]
    assert_values(used, expected, "auto")
    assert used[-1] == EPS, "full budget at the last epoch"
    assert_values(values(sched, 20), expected, "auto, asked again after the run")
    assert sched.describe() == "auto eps=4/255 patience=5 tolerance=0.02 switch=10"


def test_auto_stays_at_zero_while_accuracy_climbs():
    sched = make_schedule("auto", eps=EPS, epochs=12)
    assert run_auto(sched, [0.05 * (e + 1) for e in range(12)]) == [0.0] * 12
    assert sched.switch_epoch is None


def test_auto_tolerance_is_inclusive_and_patience_counts():
    flat = [0.50] * 3 + [0.52] * 7  # +0.02 at epoch 3: exactly the tolerance
    sched = make_schedule("auto", eps=EPS, epochs=10, patience=3)
    run_auto(sched, flat)
    assert sched.switch_epoch == 3, "earliest switch is epoch `patience`"
    strict = make_schedule("auto", eps=EPS, epochs=10, patience=3, tolerance=0.01)
    run_auto(strict, flat)
    assert strict.switch_epoch == 6, "the +0.02 leaves the window after epoch 5"


@pytest.mark.parametrize("stop", [7, 12])
def test_auto_resumes_from_its_state_dict(stop):
    whole = make_schedule("auto", eps=EPS, epochs=20)
    expected = run_auto(whole, CURVE)
    first = make_schedule("auto", eps=EPS, epochs=20)
    used = run_auto(first, CURVE[:stop])
    state = first.state_dict()
    assert state == {"history": CURVE[:stop], "switch_epoch": 10 if stop > 10 else None}
    resumed = make_schedule("auto", eps=EPS, epochs=20)
    resumed.load_state_dict(state)
    used += run_auto(resumed, CURVE, start=stop)
    assert used == expected
    assert resumed.state_dict() == whole.state_dict()


def test_auto_per_step_ramps_within_epochs():
    sched = make_schedule("auto", eps=EPS, epochs=20, per_step=True, steps_per_epoch=4)
    run_auto(sched, CURVE[:11])
    assert sched(10, 3) == 0.0, "the switch epoch itself trained at 0"
    assert sched(11, 0) == pytest.approx(EPS / 9)
    assert sched(11, 2) == pytest.approx(EPS * 1.5 / 9)


@pytest.mark.parametrize(
    "epoch, accuracy, match",
    [(1, 0.5, "expected epoch 0"), (0, 85.0, "val_accuracy"), (0, float("nan"), "val_accuracy")],
)
def test_auto_observe_rejects_bad_feedback(epoch, accuracy, match):
    sched = make_schedule("auto", eps=EPS, epochs=20)
    with pytest.raises(ValueError, match=match):
        sched.observe(epoch, accuracy)


def test_auto_refuses_foreign_state():
    sched = make_schedule("auto", eps=EPS, epochs=20)
    with pytest.raises(ValueError, match="history"):
        sched.load_state_dict({"step": 3})


# ---- state and feedback of pure schedules


@pytest.mark.parametrize("name", ["fix", "hinge", "linear", "step", "cosine", "uniform"])
def test_pure_schedules_keep_no_state(name):
    sched = make_schedule(name, eps=EPS, epochs=EPOCHS)
    before = values(sched)
    sched.observe(0, 0.9)
    sched.load_state_dict(sched.state_dict())
    assert sched.state_dict() == {} and values(sched) == before
    with pytest.raises(ValueError, match="another schedule"):
        sched.load_state_dict({"history": [0.5], "switch_epoch": None})


# ---- registry


def test_register_makes_a_schedule_available():
    @register("half")
    class Half(Schedule):
        def fraction(self, epoch, step):
            return 0.5

    try:
        assert make_schedule("half", eps=EPS, epochs=3)(2) == EPS / 2
        with pytest.raises(ValueError, match="already registered"):
            register("half")(Half)
    finally:
        del SCHEDULES["half"]


# ---- bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="hinj"), r"unknown schedule 'hinj'; choose one of \[.*'hinge'.*\]"),
        (dict(eps=-1 / 255), "eps must be a number >= 0"),
        (dict(eps=float("nan")), "eps must be a number >= 0"),
        (dict(eps=float("inf")), "eps must be finite"),
        (dict(epochs=0), "epochs must be an int >= 1"),
        (dict(epochs=2.5), "epochs must be an int >= 1"),
        (dict(t1=40, t2=37), r"t1 \(40\) must be <= t2 \(37\)"),
        (dict(t2=10), r"t1 \(12 \(the default\)\) must be <= t2 \(10\)"),
        (dict(t2=60), r"t2 \(60\) must be <= epochs \(50\)"),
        (dict(t1=-1), "t1 must be >= 0"),
        (dict(t2=-0.5), "t2 must be >= 0"),
        (dict(t1=12.0), r"t1=12.0 is a float.*pass an int for an epoch \(e.g. t1=12\)"),
        (dict(t1=True), "t1 must be an int"),
        (dict(t1="12"), "t1 must be an int"),
        (dict(per_step=True), "per_step=True needs steps_per_epoch"),
        (dict(steps_per_epoch=0), "steps_per_epoch must be an int >= 1"),
        (dict(name="fix", t1=12), "t1 has no meaning for schedule 'fix'"),
        (dict(name="linear", t1=5), r"t1 has no meaning for schedule 'linear'.*'hinge'"),
        (dict(name="auto", t2=30), "t2 has no meaning for schedule 'auto'"),
        (dict(name="step", t1=12, t2=20), "t1 and t2 must be equal"),
        (dict(name="step", t1=60), r"t2 \(60\) must be <= epochs"),
        (dict(name="uniform", seed=-1), "seed must be an int >= 0"),
        (dict(name="auto", patience=0), "patience must be an int >= 1"),
        (dict(name="auto", tolerance=-0.1), r"tolerance must be in \[0, 1\]"),
    ],
)
def test_bad_arguments_say_what_to_fix(kwargs, match):
    args = dict(name="hinge", eps=EPS, epochs=EPOCHS) | kwargs
    with pytest.raises(ValueError, match=match):
        make_schedule(args.pop("name"), **args)


@pytest.mark.parametrize(
    "call, match",
    [
        ((-1,), "epoch must be an int >= 0"),
        ((1.5,), "epoch must be an int >= 0"),
        ((3, -1), "step must be an int >= 0"),
        ((3, 10), r"step must be < steps_per_epoch \(10\)"),
    ],
)
def test_bad_calls_say_what_to_fix(call, match):
    sched = make_schedule("hinge", eps=EPS, epochs=EPOCHS, per_step=True, steps_per_epoch=10)
    with pytest.raises(ValueError, match=match):
        sched(*call)
