"""speed.graph_step on the CPU, where nothing can be captured: with an eager stand-in for the
capture, the whole-step path trains exactly as the eager path does; a capture torch refuses
leaves the run going on the eager path; the lever's bad settings are one-line errors.
(tests/engine/test_gpu_engine.py captures it for real.)"""

import json
from dataclasses import replace
from typing import ClassVar

import pytest
import torch

import fastrft.engine.step as step_module
from fastrft.config import ConfigError, load_config
from fastrft.engine import Trainer
from fastrft.engine.capture import check_graph_step
from fastrft.engine.checkpoint import load_checkpoint
from fastrft.engine.graphs import CaptureFailed
from fastrft.engine.speed import resolve_speed
from tests.engine.test_train import TINY


class EagerCapture:
    """Stands in for a CapturedCall: runs the step it was given each call."""

    made: ClassVar[list[int]] = []

    def __init__(self, step, inputs, model, optimizer):
        self.step, self.shapes = step, [t.shape for t in inputs]
        EagerCapture.made.append(len(inputs))

    def fits(self, *inputs):
        return [t.shape for t in inputs] == self.shapes

    def __call__(self, *inputs):
        return self.step(*inputs)


def _fit(tmp_path, name, graph_step, *extra):
    out = f"out_dir={tmp_path / name}"
    cfg = load_config(overrides=[*TINY, "schedule.name=hinge", out, *extra])
    trainer = Trainer(cfg, progress=False)
    if graph_step:  # what speed.graph_step=true sets on a GPU
        trainer.speed = replace(trainer.speed, graph_step=True)
        trainer.train_step.graphed = True
    trainer.fit()
    weights = load_checkpoint(tmp_path / name / "checkpoints" / "last.pt")["model"]
    return json.loads((tmp_path / name / "results.json").read_text()), weights, trainer


def _same_run(a, b):
    (results_a, weights_a, _), (results_b, weights_b, _) = a, b
    assert results_a["accuracy_curve"] == results_b["accuracy_curve"]
    for key, value in weights_a.items():
        assert torch.equal(value, weights_b[key]), key


def test_whole_step_path_trains_exactly_as_the_eager_path(tmp_path, monkeypatch):
    monkeypatch.setattr(step_module, "capture_step", EagerCapture)
    EagerCapture.made.clear()
    graphed = _fit(tmp_path, "graphed", True)
    eager = _fit(tmp_path, "eager", False)
    _same_run(graphed, eager)
    # hinge over 3 epochs: eps = 0 in epochs 0-1 (a step without the attack), then attacked
    assert EagerCapture.made == [2, 3]
    assert graphed[2].speed.graph_step  # never fell back


def test_a_refused_capture_stops_the_run_which_resumes_without_the_lever(tmp_path, monkeypatch):
    def capture_then_refuse(step, inputs, model, optimizer):
        if len(inputs) == 3:  # the attacked step, first taken in epoch 2 of the hinge
            raise CaptureFailed("operation would make the legacy stream depend on a capturing")
        return EagerCapture(step, inputs, model, optimizer)

    monkeypatch.setattr(step_module, "capture_step", capture_then_refuse)
    with pytest.raises(ConfigError, match=r"run again with speed\.graph_step=false \(the run"):
        _fit(tmp_path, "cut", True)
    # epochs 0 and 1 were checkpointed; the rerun without the lever finishes the run
    resumed = _fit(tmp_path, "cut", False)
    assert [r["epoch"] for r in resumed[2].history] == [0, 1, 2]
    _same_run(resumed, _fit(tmp_path, "eager", False))


def test_graph_step_needs_cuda_graphs():
    cfg = load_config(overrides=["speed.graph_step=true", "speed.cuda_graphs=false"])
    with pytest.raises(ValueError, match=r"speed\.graph_step: capturing the whole step needs"):
        resolve_speed(cfg.speed, torch.device("cpu"))
    assert not resolve_speed(load_config().speed, torch.device("cpu")).graph_step


@pytest.mark.parametrize(
    ("distributed", "accumulate", "amp", "message"),
    [
        (True, 1, torch.bfloat16, "runs in one process"),
        (False, 2, torch.bfloat16, "optim.accumulate=1"),
        (False, 1, torch.float16, "use speed.amp=bf16"),
    ],
)
def test_graph_step_refuses_what_a_graph_cannot_hold(distributed, accumulate, amp, message):
    with pytest.raises(ConfigError, match=message):
        check_graph_step(distributed, accumulate, amp)
    check_graph_step(False, 1, torch.bfloat16)
    check_graph_step(False, 1, None)


def test_a_run_resumes_under_other_speed_settings_but_not_another_config(tmp_path, capsys):
    out = f"out_dir={tmp_path / 'run'}"
    Trainer(load_config(overrides=[*TINY, "epochs=1", out]), progress=False).fit()
    other_speed = load_config(overrides=[*TINY, "epochs=1", out, "speed.channels_last=true"])
    assert Trainer(other_speed, progress=False)._resume() == 1
    assert "resuming with other speed settings" in capsys.readouterr().err
    saved = load_config([tmp_path / "run" / "config.yaml"])
    assert saved.speed.channels_last == "true"  # the run's config says how it goes on
    other_run = load_config(overrides=[*TINY, "epochs=1", out, "optim.lr=0.5"])
    with pytest.raises(ConfigError, match="holds a run with another config"):
        Trainer(other_run, progress=False)._resume()


def test_a_checkpoint_loads_the_way_the_run_steps(tmp_path):
    """Saved without the lever, resumed with it: capturable, learning rates and step counts
    as tensors on the run's device; and back."""
    _, _, first = _fit(tmp_path, "run", False)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["optimizer"]
    trainer = Trainer(first.cfg, progress=False)
    trainer.speed = replace(trainer.speed, graph_step=True)
    trainer.train_step.graphed = True
    trainer.train_step.load_optimizer(state)
    groups = trainer.optimizer.param_groups
    assert all(g["capturable"] for g in groups)
    assert all(torch.is_tensor(g["lr"]) and g["lr"].dtype == torch.float32 for g in groups)
    assert [g["lr"].item() for g in groups] == pytest.approx(
        [g["lr"] for g in state["param_groups"]]
    )
    assert all(torch.is_tensor(g["initial_lr"]) for g in groups)
    assert all(s["step"].device == trainer.device for s in trainer.optimizer.state.values())

    saved_captured = trainer.optimizer.state_dict()
    plain = Trainer(first.cfg, progress=False)
    plain.train_step.load_optimizer(saved_captured)
    assert not any(g["capturable"] for g in plain.optimizer.param_groups)
    assert all(isinstance(g["lr"], float) for g in plain.optimizer.param_groups)


def _as_graphed_run_saves(optimizer_state, schedule_state):
    """The states a speed.graph_step run checkpoints: learning rates as tensors, in the
    optimizer's groups and in the schedule's base and last rates."""
    tensor = lambda v: torch.tensor(v, dtype=torch.float32)  # noqa: E731
    for group in optimizer_state["param_groups"]:
        group["capturable"] = True
        group["lr"], group["initial_lr"] = tensor(group["lr"]), tensor(group["initial_lr"])
    for key in ("base_lrs", "_last_lr"):
        schedule_state[key] = [tensor(v) for v in schedule_state[key]]
    return optimizer_state, schedule_state


def test_a_graphed_run_resumed_without_the_lever_steps_with_plain_float_rates(tmp_path):
    """The schedule's saved base rates were tensors, so its first step after the resume wrote
    tensor learning rates back into the groups, and AdamW left its foreach path."""
    _, _, first = _fit(tmp_path, "run", False)
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    saved = _as_graphed_run_saves(state["optimizer"], state["lr_schedule"])
    plain = Trainer(first.cfg, progress=False)
    plain.train_step.load_optimizer(*saved)
    plain.lr_schedule.step()
    groups = plain.optimizer.param_groups
    assert all(type(g["lr"]) is float and type(g["initial_lr"]) is float for g in groups)
    assert all(type(lr) is float for lr in plain.lr_schedule.base_lrs)
    assert all(type(lr) is float for lr in plain.lr_schedule.get_last_lr())
