"""The running weight average of ``train.average``: what it averages, swaps and resumes."""

from __future__ import annotations

import pytest
import torch

from distilray.distill.average import WeightAverage, restore_raw


def _model() -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model[1].requires_grad_(False)  # frozen: never averaged
    return model


def _set(model: torch.nn.Module, value: float) -> None:
    with torch.no_grad():
        model[0].weight.fill_(value)


def _train(average: WeightAverage, model: torch.nn.Module, values, first_step: int = 1) -> None:
    """Steps ``first_step``, ``first_step + 1``, ... whose weights are ``values``."""
    for step, value in enumerate(values, start=first_step):
        _set(model, value)
        average.update(model, step)


def test_mean_of_the_steps_from_start_step_then_ema():
    model = _model()
    average = WeightAverage(model, decay=0.5, start_step=3)  # horizon: 2 steps
    _train(average, model, [100.0, 100.0, 1.0, 3.0, 5.0])
    # steps 1-2 left out; steps 3-4 a plain mean (2.0); step 5 at weight 1 - decay
    assert average.count == 3
    assert torch.allclose(average.average["0.weight"], torch.full((2, 2), 0.5 * 2.0 + 0.5 * 5.0))
    assert set(average.average) == {"0.weight", "0.bias"}


def test_applied_swaps_the_average_in_and_the_raw_weights_back():
    model = _model()
    average = WeightAverage(model, decay=0.9)
    _train(average, model, [1.0, 3.0])
    frozen = model[1].weight.detach().clone()
    with average.applied(model) as raw:
        assert torch.all(model[0].weight == 2.0)
        assert torch.all(raw["0.weight"] == 3.0)
        assert torch.equal(model[1].weight, frozen)
    assert torch.all(model[0].weight == 3.0)


def test_before_start_step_the_model_is_its_raw_self():
    model = _model()
    average = WeightAverage(model, decay=0.9, start_step=10)
    _train(average, model, [4.0])
    with average.applied(model) as raw:
        assert torch.all(model[0].weight == 4.0) and torch.all(raw["0.weight"] == 4.0)
    assert average.state_dict(raw)["count"] == 0


def test_resume_keeps_the_average_and_trains_on_from_the_raw_weights():
    model = _model()
    average = WeightAverage(model, decay=0.5)
    _train(average, model, [2.0, 4.0])
    with average.applied(model) as raw:
        saved_model = {k: v.clone() for k, v in model.state_dict().items()}  # the checkpoint
        state = average.state_dict(raw)

    resumed = _model()
    resumed.load_state_dict(saved_model)
    again = WeightAverage(resumed, decay=0.5)
    again.resume(resumed, state)
    assert torch.all(resumed[0].weight == 4.0)  # training goes on from the raw weights
    assert torch.all(again.average["0.weight"] == 3.0) and again.count == 2
    _train(again, resumed, [6.0], first_step=3)
    assert torch.all(again.average["0.weight"] == 4.5)  # the EMA continues, not restarts

    plain = _model()
    plain.load_state_dict(saved_model)
    restore_raw(plain, state)  # averaging turned off since: still the raw weights
    assert torch.all(plain[0].weight == 4.0)


def test_decay_must_be_a_fraction():
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(_model(), decay=1.0)
