"""The ladder's parts: each rung's step trains, the baselines are the attacks they claim to
be, the limit counts the attack's passes right, timing and telemetry add up."""

import sys
import types

import pytest
import torch
import torch.nn.functional as F

import fastrft.engine.attacker as attacker_module
import fastrft.engine.step as step_module
from fastrft.attacks import apgd, fgsm, pgd
from fastrft.attacks.losses import cross_entropy
from fastrft.bench import ladder, telemetry, timing
from fastrft.bench.baseline import pgd_baseline
from fastrft.bench.ladder import RUNGS, Workload, release, runnable, training_step
from fastrft.bench.limit import passes
from fastrft.bench.projection import RunShape, project
from fastrft.config import AttackConfig, load_config
from fastrft.engine import Trainer
from fastrft.engine.step import TrainStep
from fastrft.objectives import Madry, Objective, Trades
from tests.engine.test_train import TINY
from tests.helpers import assert_close

CPU = torch.device("cpu")


def workload(attack="pgd", objective="madry", steps=2, **kw):
    return Workload(
        model="tiny_cnn",
        img_size=12,
        batch_size=5,
        num_classes=7,
        attack=AttackConfig(name=attack, eps=8 / 255, steps=steps),
        objective=objective,
        amp_dtype=torch.bfloat16,
        device=CPU,
        **kw,
    )


@pytest.fixture
def updates(monkeypatch):
    """The parameters as each AdamW step found them."""
    seen = []
    original = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        seen.append([p.detach().clone() for g in self.param_groups for p in g["params"]])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    return seen


@pytest.fixture
def crafted(monkeypatch):
    """(x, x_adv) of each training loss computed; the loss is plain CE on x_adv."""
    seen = []

    def loss(self, model, x, y, x_adv):
        seen.append((x, x_adv))
        logits = model(x_adv)
        return F.cross_entropy(logits.float(), y), logits

    for cls in (Objective, Madry, Trades):
        monkeypatch.setattr(cls, "loss", loss)
    return seen


def weights_moved(updates) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(*updates[-2:], strict=True))


@pytest.mark.parametrize("rung", [r for r in RUNGS if r.index < 5])
@pytest.mark.parametrize(
    ("attack", "objective"),
    [("pgd", "madry"), ("apgd", "madry"), ("fgsm", "madry"), ("pgd", "trades")],
)
def test_every_rung_takes_a_real_training_step(rung, attack, objective, updates, crafted):
    """The weights move, the attack's examples stay in the ball and the box and keep the
    rung's layout."""
    step = training_step(rung, workload(attack, objective))
    step()
    step()
    assert len(updates) == 2 and weights_moved(updates), "no weight moved"
    x, x_adv = crafted[-1]
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv != x).any(), "the attack left the batch untouched"
    assert x_adv.is_contiguous(memory_format=torch.channels_last) == rung.has("channels_last")
    release(CPU)


def test_whole_step_rung_captures_the_engines_step(updates, crafted, monkeypatch):
    """Rung 7 on the CPU, its capture replaced by the step itself and compile by the bare
    model: the step it hands to the capture attacks (eagerly, with the budget tensor) and
    trains; it is captured once, on the first call."""
    made = []

    class Capture:  # stands in for a CapturedCall: runs the step it was given each call
        def __init__(self, step, inputs, model, optimizer):
            made.append([t.shape for t in inputs])
            self.step = step

        def fits(self, *inputs):
            return True

        def __call__(self, *inputs):
            return self.step(*inputs)

    monkeypatch.setattr(step_module, "capture_step", Capture)
    monkeypatch.setattr(torch, "compile", lambda model, **options: model)
    step = training_step(RUNGS[7], workload("apgd"))
    step()
    step()
    assert made == [[torch.Size([5, 3, 12, 12]), torch.Size([5]), torch.Size([5])]]
    assert len(updates) == 2 and weights_moved(updates)
    x, x_adv = crafted[-1]
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and (x_adv != x).any()
    assert x_adv.is_contiguous(memory_format=torch.channels_last)


class _Graph:
    """Stands in for a CapturedCall: replays the function it was given by running it."""

    def __init__(self, fn, inputs=()):
        self.fn = fn

    def fits(self, *inputs):
        return True

    def __call__(self, *inputs):
        return self.fn(*inputs)


class TrainStepSpy:
    """Records each step TrainStep.with_speed builds (with the speed it was built for), each
    call of one, and each function handed to the capture (which runs it eagerly, as the
    graph would replay it)."""

    def __init__(self, monkeypatch):
        self.built, self.ran, self.captured = [], [], []
        build, call = TrainStep.with_speed.__func__, TrainStep.__call__

        def with_speed(cls, speed, *args, **kwargs):
            self.built.append((speed, build(cls, speed, *args, **kwargs)))
            return self.built[-1][1]

        def called(step, *args, **kwargs):
            self.ran.append(step)
            return call(step, *args, **kwargs)

        monkeypatch.setattr(TrainStep, "with_speed", classmethod(with_speed))
        monkeypatch.setattr(TrainStep, "__call__", called)
        monkeypatch.setattr(step_module, "capture_step", self.capture)

    def capture(self, fn, inputs, model, optimizer):
        self.captured.append(fn)
        return _Graph(fn)

    def clear(self):
        self.built.clear(), self.ran.clear(), self.captured.clear()


def test_the_ladder_times_the_trainers_own_step(tmp_path, monkeypatch):
    """The trainer and every rung build their step with the one builder, TrainStep, each
    from its speed settings, and run it: what the ladder times is what users train with.
    The whole step the trainer and rung 7 capture is that step's own TrainStep.run."""
    spy = TrainStepSpy(monkeypatch)
    monkeypatch.setattr(attacker_module, "CapturedCall", _Graph)  # rung 6's attack graph
    cfg = load_config(overrides=[*TINY, "epochs=2", f"out_dir={tmp_path / 'run'}"])
    trainer = Trainer(cfg, progress=False)
    assert spy.built == [(trainer.speed, trainer.train_step)]
    assert type(trainer.train_step) is TrainStep
    trainer._train_epoch(0)
    assert spy.ran == [trainer.train_step] * len(trainer.train_loader)

    monkeypatch.setattr(
        torch, "compile", lambda model, **options: model
    )  # rung 5 on the CPU, quickly
    w = workload()
    for rung in RUNGS:
        spy.clear()
        step = training_step(rung, w)
        ((speed, built),) = spy.built
        assert type(built) is TrainStep and speed == ladder.rung_speed(rung, w)
        assert built.graphed == (rung.index == 7)
        step()
        assert spy.ran == [built], rung.index
        assert spy.captured == ([built.run] if built.graphed else []), rung.index
    release(CPU)

    trainer.train_step.graphed = True  # what speed.graph_step=true sets on a GPU
    spy.clear()
    trainer._train_epoch(1)
    assert spy.captured == [trainer.train_step.run]


@pytest.mark.slow
def test_compiled_rung_trains(updates, crafted):
    step = training_step(RUNGS[5], workload())
    step()
    step()
    assert len(updates) == 2 and weights_moved(updates)
    release(CPU)


def test_cuda_graph_rung_is_refused_on_the_cpu():
    assert runnable(RUNGS[6], CPU) == runnable(RUNGS[7], CPU) == "CUDA graphs need a CUDA GPU"
    assert all(runnable(r, CPU) is None for r in RUNGS[:6])


def test_pgd_baseline_is_fastrfts_pgd(trained):
    """Without random starts, torchattacks' PGD loop and fastrft's pgd take the same steps."""
    model, x, y = trained
    x, y = x[:64], y[:64]
    ours = pgd(model, x, y, 8 / 255, alpha=2 / 255, steps=5, random_start=False, backend="torch")
    theirs = pgd_baseline(model, x, y, 8 / 255, 2 / 255, 5, cross_entropy, random_start=False)
    assert_close(ours, theirs, atol=1e-6, what="x_adv")


@pytest.mark.parametrize(
    ("name", "steps", "objective"),
    [("pgd", 5, "madry"), ("apgd", 7, "madry"), ("fgsm", 1, "madry"), ("pgd", 3, "trades")],
)
def test_passes_count_the_attacks_model_calls(name, steps, objective, tiny_model):
    """The limit's (k_grad, k_fwd) is what the attack really runs: counted with a hook."""
    calls = {"grad": 0, "fwd": 0}

    def count(module, args):
        calls["grad" if torch.is_grad_enabled() and args[0].requires_grad else "fwd"] += 1

    tiny_model.register_forward_pre_hook(count)
    x = torch.rand(4, 3, 8, 8)
    y = torch.randint(5, (4,))
    fn = {
        "pgd": lambda: pgd(tiny_model, x, y, 4 / 255, steps=steps),
        "apgd": lambda: apgd(tiny_model, x, y, 4 / 255, steps=steps),
        "fgsm": lambda: fgsm(tiny_model, x, y, 4 / 255),
    }[name]
    if objective == "trades":  # the clean forward whose prediction TRADES' attack leaves
        from fastrft.objectives import make_objective

        make_objective("trades").attack_target(tiny_model, x, y)
    fn()
    assert passes(AttackConfig(name=name, steps=steps), objective) == (calls["grad"], calls["fwd"])


def test_projection_counts_clean_epochs_at_the_clean_speed():
    shape = RunShape.paper(images=1000, epochs=50)
    assert shape.clean_epochs == 12
    p = project(shape, adversarial_images_per_s=100.0, clean_step_ms=100.0, batch_size=50)
    assert p.fix_s == pytest.approx(50 * 1000 / 100)
    assert p.hinge_s == pytest.approx(12 * 1000 / 500 + 38 * 1000 / 100)
    assert project(shape, 100.0, None, 50).hinge_s == pytest.approx(p.fix_s)


def test_time_calls_divides_each_repeat_by_its_calls(monkeypatch):
    clock = iter([0.0, 0.3, 1.0, 1.6, 2.0, 2.9])  # repeats of 0.3, 0.6 and 0.9 s
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    t, total = timing.time_calls(lambda: None, CPU, calls=3, repeats=3)
    assert t.median_ms == pytest.approx(200) and total == pytest.approx(1.8)
    assert t.p20_ms == pytest.approx(100 + 0.4 * 100) and t.p80_ms == pytest.approx(300 - 0.4 * 100)


@pytest.mark.parametrize(
    ("last_warmup_s", "repeat_s", "calls"),
    [(0.25, 1.0, 4), (3.0, 1.0, 1), (0.01, 1.0, 10), (3.0, None, 10)],
)
def test_measure_fits_its_calls_to_the_seconds_a_repeat_may_take(
    last_warmup_s, repeat_s, calls, monkeypatch
):
    made = []
    monkeypatch.setattr(ladder, "timed", lambda fn, device: (fn(), last_warmup_s)[1])
    m = ladder.measure(
        lambda: made.append(1), workload(), warmup=2, calls=10, repeats=3, repeat_s=repeat_s
    )
    assert m.calls == calls
    assert len(made) == 2 + 3 * calls  # the warm-up, then each repeat's calls
    assert m.warmup_s == pytest.approx(2 * last_warmup_s)


def _fake_nvml(samples, energy_mj, utilization=True):
    """A stand-in pynvml: each power reading takes the next sample, the other readings
    return that sample's fields; ``energy_mj`` None: a GPU without the energy counter."""
    state = {}

    def power(h):
        state["s"] = next(samples)
        return state["s"][0]

    def energy(h):
        if energy_mj is None:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return next(energy_mj)

    def util(h):
        if not utilization:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return types.SimpleNamespace(gpu=state["s"][2])

    return types.SimpleNamespace(
        NVML_CLOCK_SM=0,
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetTotalEnergyConsumption=energy,
        nvmlDeviceGetPowerUsage=power,
        nvmlDeviceGetClockInfo=lambda h, c: state["s"][1],
        nvmlDeviceGetUtilizationRates=util,
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(used=state["s"][3]),
    )


@pytest.fixture
def nvml(monkeypatch):
    """Install a fake pynvml; the region lasts 3 s by the sampler's clock."""
    clock = iter([100.0, 103.0])
    monkeypatch.setattr(telemetry.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(telemetry, "_handle", lambda pynvml, device: "h")

    def install(*args, **kwargs):
        monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(*args, **kwargs))

    return install


SAMPLES = [(200_000, 1800, 90, 4 * 2**30), (300_000, 1700, 100, 6 * 2**30)]


def test_telemetry_power_is_the_energy_counter_over_time(nvml):
    nvml(iter(SAMPLES), iter([10_000.0, 25_000.0]))  # mJ at the start and at the end
    # a region shorter than the interval still gets its entry and exit samples
    with telemetry.TelemetrySampler(torch.device("cuda", 0), interval_s=60) as s:
        pass
    r = s.result
    assert r.energy_j == pytest.approx(15.0) and r.mean_power_w == pytest.approx(5.0)
    assert r.sm_clock_mhz == pytest.approx(1750) and r.memory_used_gib == pytest.approx(5)
    assert r.utilization_pct == pytest.approx(95)


def test_telemetry_without_the_counter_or_a_reading_uses_what_there_is(nvml):
    nvml(iter(SAMPLES), None, utilization=False)
    with telemetry.TelemetrySampler(torch.device("cuda", 0), interval_s=60) as s:
        pass
    r = s.result
    assert r.mean_power_w == pytest.approx(250.0) and r.energy_j == pytest.approx(750.0)
    assert r.utilization_pct is None and r.sm_clock_mhz == pytest.approx(1750)


def test_telemetry_off_nvidia_is_empty():
    with telemetry.TelemetrySampler(CPU) as s:
        pass
    assert all(v is None for v in s.result.as_dict().values())


@pytest.mark.slow
def test_a_row_counts_the_graphs_its_rung_compiled():
    """Two for the compiled rung (PGD, madry): the attack's pass (parameters frozen, a gradient
    on the input) and the training forward; none for an eager rung."""
    w, counts = workload(), {"warmup": 1, "calls": 1, "repeats": 1}
    eager = ladder.run_rung(RUNGS[4], w, **counts).as_dict()
    compiled = ladder.run_rung(RUNGS[5], w, **counts).as_dict()
    assert (eager["compiled_graphs"], compiled["compiled_graphs"]) == (0, 2)
