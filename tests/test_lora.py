"""Unit tests for mlcourse.lora: exactness at initialisation, merge/unmerge, what trains,
adapter save/load, and the error messages for bad arguments."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mlcourse.lora import (
    LoRALinear,
    count_parameters,
    inject_lora,
    linear_layer_names,
    load_lora_state_dict,
    lora_layers,
    lora_state_dict,
    merge_lora,
    unmerge_lora,
)


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(12, 24), nn.ReLU(), nn.Sequential(nn.Linear(24, 24), nn.Tanh()), nn.Linear(24, 5)
    )


TARGETS = ["0", "2.0", "3"]


def trained_adapter(model: nn.Module, seed: int = 1) -> nn.Module:
    """Give every LoRA B a non-zero value, as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=generator) * 0.1)
    return model


def test_zero_init_output_equals_base_exactly():
    base = make_model()
    adapted = inject_lora(copy.deepcopy(base), TARGETS, rank=4, alpha=8.0)
    x = torch.randn(32, 12)
    assert torch.equal(adapted(x), base(x))
    for layer in lora_layers(adapted).values():
        assert torch.count_nonzero(layer.lora_B) == 0
        assert torch.count_nonzero(layer.lora_A) > 0  # A random, so gradients reach B


def test_forward_is_base_plus_scaled_low_rank_update():
    layer = LoRALinear(nn.Linear(7, 3), rank=2, alpha=6.0)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(4, 7)
    W, b = layer.base.weight, layer.base.bias
    expected = x @ W.T + b + (6.0 / 2) * x @ layer.lora_A.T @ layer.lora_B.T
    torch.testing.assert_close(layer(x), expected, atol=1e-6, rtol=1e-6)
    assert torch.linalg.matrix_rank(layer.delta_weight()) <= 2
    assert layer.scaling == 3.0


def test_alpha_defaults_to_rank():
    layer = LoRALinear(nn.Linear(5, 5), rank=3)
    assert layer.alpha == 3.0 and layer.scaling == 1.0


def test_merge_matches_unmerged_forward_and_unmerge_restores_base():
    base = make_model()
    adapted = trained_adapter(inject_lora(copy.deepcopy(base), TARGETS, rank=3, alpha=6.0))
    x = torch.randn(64, 12)
    with torch.no_grad():
        unmerged_out = adapted(x)
        assert not torch.allclose(unmerged_out, base(x), atol=1e-4)  # the adapter does something
        assert merge_lora(adapted) == 3
        merged_out = adapted(x)
    assert torch.allclose(merged_out, unmerged_out, atol=1e-6, rtol=0)
    for layer in lora_layers(adapted).values():
        assert layer.merged
    assert unmerge_lora(adapted) == 3
    base_weights = {n: p for n, p in base.named_parameters()}
    for name, layer in lora_layers(adapted).items():
        original = base_weights[f"{name}.weight"]
        assert torch.allclose(layer.base.weight, original, atol=1e-6, rtol=0)
        assert torch.equal(layer.base.bias, base_weights[f"{name}.bias"])
    with torch.no_grad():
        assert torch.allclose(adapted(x), unmerged_out, atol=1e-6, rtol=0)


def test_merged_forward_uses_only_the_base_layer():
    layer = LoRALinear(nn.Linear(4, 4), rank=1)
    layer.merge()
    with torch.no_grad():
        layer.lora_A.fill_(float("nan"))  # would poison the output if the forward used it
    assert torch.isfinite(layer(torch.randn(2, 4))).all()


def test_merge_twice_and_unmerge_unmerged_raise():
    layer = LoRALinear(nn.Linear(4, 4), rank=1)
    with pytest.raises(RuntimeError, match="not merged"):
        layer.unmerge()
    layer.merge()
    with pytest.raises(RuntimeError, match="already merged"):
        layer.merge()


def test_only_lora_matrices_are_trainable_and_receive_gradients():
    model = inject_lora(make_model(), TARGETS, rank=2)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == sorted(f"{t}.{m}" for t in TARGETS for m in ("lora_A", "lora_B"))
    model(torch.randn(8, 12)).pow(2).sum().backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == p.requires_grad, name


def test_injecting_in_two_steps_keeps_both_adapters_trainable():
    model = inject_lora(make_model(), ["0"], rank=2)
    inject_lora(model, ["3"], rank=1)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == ["0.lora_A", "0.lora_B", "3.lora_A", "3.lora_B"]


def test_parameter_count():
    model = inject_lora(make_model(), TARGETS, rank=2)
    count = count_parameters(model)
    base_total = (12 * 24 + 24) + (24 * 24 + 24) + (24 * 5 + 5)
    lora_total = 2 * (12 + 24) + 2 * (24 + 24) + 2 * (24 + 5)
    assert count.trainable == lora_total
    assert count.total == base_total + lora_total
    assert count.fraction == pytest.approx(lora_total / (base_total + lora_total))
    assert str(count).startswith(f"{lora_total:,} of {base_total + lora_total:,}")


def test_adapter_state_round_trip():
    base = make_model()
    adapted = trained_adapter(inject_lora(copy.deepcopy(base), TARGETS, rank=2, alpha=4.0))
    state = lora_state_dict(adapted)
    assert sorted(state) == sorted(f"{t}.{m}" for t in TARGETS for m in ("lora_A", "lora_B"))
    torch.manual_seed(123)  # another random A: loading must overwrite it
    fresh = inject_lora(copy.deepcopy(base), TARGETS, rank=2, alpha=4.0)
    load_lora_state_dict(fresh, state)
    x = torch.randn(16, 12)
    assert torch.equal(fresh(x), adapted(x))


def test_adapter_of_another_rank_is_rejected():
    base = make_model()
    state = lora_state_dict(inject_lora(copy.deepcopy(base), TARGETS, rank=2))
    other = inject_lora(copy.deepcopy(base), TARGETS, rank=3)
    with pytest.raises(ValueError, match=r"shape \(2, 12\).*\(3, 12\)"):
        load_lora_state_dict(other, state)
    fewer = inject_lora(copy.deepcopy(base), ["0"], rank=2)
    with pytest.raises(ValueError, match="unexpected"):
        load_lora_state_dict(fewer, state)


@pytest.mark.parametrize("rank", [0, -1])
def test_rank_must_be_positive(rank):
    with pytest.raises(
        ValueError, match=rf"rank={rank} is out of range; expected an integer in \[1, inf\)"
    ):
        inject_lora(make_model(), TARGETS, rank=rank)


@pytest.mark.parametrize("rank", [2.0, "4", True])
def test_rank_must_be_an_int(rank):
    with pytest.raises(TypeError, match="rank must be an integer"):
        LoRALinear(nn.Linear(3, 3), rank=rank)


@pytest.mark.parametrize("alpha", [0.0, -1.0])
def test_alpha_must_be_positive(alpha):
    with pytest.raises(ValueError, match=r"alpha=.* is out of range"):
        inject_lora(make_model(), TARGETS, rank=2, alpha=alpha)


def test_unknown_target_names_are_listed_with_the_existing_ones():
    with pytest.raises(ValueError) as info:
        inject_lora(make_model(), ["0", "fc1", "2.7"], rank=2)
    message = str(info.value)
    assert "'fc1'" in message and "'2.7'" in message
    assert "nn.Linear layers of the model: '0', '2.0', '3'" in message


def test_non_linear_target_is_rejected():
    with pytest.raises(TypeError, match="'1' is a ReLU, not a plain nn.Linear"):
        inject_lora(make_model(), ["1"], rank=2)


def test_target_modules_as_a_bare_string_is_rejected():
    with pytest.raises(TypeError, match=r"write \['0'\]"):
        inject_lora(make_model(), "0", rank=2)


def test_empty_and_repeated_targets_are_rejected():
    with pytest.raises(ValueError, match="empty"):
        inject_lora(make_model(), [], rank=2)
    with pytest.raises(ValueError, match="more than once"):
        inject_lora(make_model(), ["0", "0"], rank=2)


def test_injecting_twice_is_rejected():
    model = inject_lora(make_model(), ["0"], rank=2)
    with pytest.raises(TypeError, match="already a LoRALinear"):
        inject_lora(model, ["0"], rank=2)


def test_nothing_is_changed_when_arguments_are_bad():
    model = make_model()
    with pytest.raises(ValueError):
        inject_lora(model, ["0", "missing"], rank=2)
    assert not lora_layers(model)
    assert all(p.requires_grad for p in model.parameters())


def test_merging_a_model_checks_every_layer_before_changing_any():
    base = make_model()
    adapted = trained_adapter(inject_lora(copy.deepcopy(base), TARGETS, rank=2))
    lora_layers(adapted)["3"].merge()  # one layer merged by hand: merge_lora must refuse
    before = {name: t.clone() for name, t in adapted.state_dict().items()}
    with pytest.raises(RuntimeError, match="'3' is already merged"):
        merge_lora(adapted)
    assert all(torch.equal(before[n], t) for n, t in adapted.state_dict().items())
    assert not lora_layers(adapted)["0"].merged
    with pytest.raises(RuntimeError, match="'0' is not merged"):
        unmerge_lora(adapted)
    assert all(torch.equal(before[n], t) for n, t in adapted.state_dict().items())


def test_an_int8_base_trains_adapters_but_refuses_to_merge():
    from mlcourse.resources import quantize_frozen_linear

    model = quantize_frozen_linear(trained_adapter(inject_lora(make_model(), TARGETS, rank=2)))
    x = torch.randn(8, 12)
    model(x).pow(2).sum().backward()
    for name, layer in lora_layers(model).items():
        assert type(layer.base).__name__ == "Int8Linear", name
        assert layer.lora_A.grad is not None and layer.lora_B.grad is not None
    before = {name: t.clone() for name, t in model.state_dict().items()}
    with pytest.raises(
        TypeError, match="cannot merge into a base layer of type Int8Linear.*full-precision copy"
    ):
        merge_lora(model)
    assert all(torch.equal(before[n], t) for n, t in model.state_dict().items())
    assert not any(layer.merged for layer in lora_layers(model).values())
    state = lora_state_dict(model)  # the adapter itself is the same on any base
    fresh = inject_lora(make_model(), TARGETS, rank=2)
    load_lora_state_dict(fresh, state)
    assert sorted(lora_state_dict(fresh)) == sorted(state)


def test_helpers_need_lora_layers():
    with pytest.raises(ValueError, match="inject_lora"):
        merge_lora(make_model())
    assert linear_layer_names(make_model()) == ["0", "2.0", "3"]
