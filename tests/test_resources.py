import copy

import pytest
import torch

from mlcourse.config_fields import ConfigError
from mlcourse.lora import count_parameters, inject_lora, lora_layers
from mlcourse.resources import (
    Hardware,
    Int8Linear,
    ResourceConfig,
    ResourceFallbackWarning,
    ResourceUnavailableError,
    quantize_frozen_linear,
    resolve,
)

CPU_ONLY = Hardware(cuda_devices=(), cuda_bf16=False, mps=False, cpu_count=2)
GPU_BOX = Hardware(cuda_devices=("Some GPU",), cuda_bf16=True, mps=False, cpu_count=16)
OLD_GPU = Hardware(cuda_devices=("Old GPU",), cuda_bf16=False, mps=False, cpu_count=8)
MAC = Hardware(cuda_devices=(), cuda_bf16=False, mps=True, cpu_count=8)


def test_auto_picks_best_device_and_sensible_defaults(monkeypatch):
    monkeypatch.delenv("MLCOURSE_DEVICE", raising=False)
    cpu = resolve(hardware=CPU_ONLY)
    assert (cpu.device.type, cpu.lite, cpu.model_size, cpu.precision) == (
        "cpu",
        True,
        "small",
        "fp32",
    )
    gpu = resolve(hardware=GPU_BOX)
    assert (gpu.device.type, gpu.lite, gpu.model_size) == ("cuda", False, "medium")
    assert resolve(hardware=MAC).device.type == "mps"
    assert resolve(hardware=GPU_BOX, lite=True).model_size == "small"


def test_environment_variable_pins_auto(monkeypatch):
    monkeypatch.setenv("MLCOURSE_DEVICE", "cpu")
    assert resolve(hardware=GPU_BOX).device.type == "cpu"
    monkeypatch.setenv("MLCOURSE_DEVICE", "tpu")
    with pytest.raises(ValueError, match="MLCOURSE_DEVICE='tpu' is not supported"):
        resolve(hardware=GPU_BOX)


def test_missing_device_is_an_error_without_fallback():
    with pytest.raises(
        ResourceUnavailableError, match=r"device='cuda' is not available.*available: 'cpu'"
    ):
        resolve(device="cuda", hardware=CPU_ONLY)


def test_fallback_warns_and_is_recorded():
    with pytest.warns(ResourceFallbackWarning, match="using 'cpu' instead"):
        res = resolve(device="mps", allow_fallback=True, hardware=CPU_ONLY)
    assert res.device.type == "cpu"
    assert [(f.setting, f.requested, f.used) for f in res.fallbacks] == [("device", "mps", "cpu")]
    assert res.as_dict()["fallbacks"][0]["used"] == "cpu"


@pytest.mark.parametrize(
    ("hardware", "device", "precision", "used"),
    [
        (CPU_ONLY, "cpu", "fp16", "bf16"),
        (OLD_GPU, "cuda", "bf16", "fp16"),
        (GPU_BOX, "cuda", "int8", "fp16"),
        (MAC, "mps", "int8", "fp32"),
    ],
)
def test_precision_fallbacks(hardware, device, precision, used):
    with pytest.raises(ResourceUnavailableError, match=f"precision='{precision}' is not supported"):
        resolve(device=device, precision=precision, hardware=hardware)
    with pytest.warns(ResourceFallbackWarning):
        res = resolve(device=device, precision=precision, allow_fallback=True, hardware=hardware)
    assert res.precision == used


def test_supported_precisions_need_no_fallback():
    assert resolve(device="cuda", precision="bf16", hardware=GPU_BOX).fallbacks == ()
    assert resolve(device="cpu", precision="int8", hardware=CPU_ONLY).precision == "int8"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("device", "tpu", "device='tpu' is not supported"),
        ("precision", "fp8", "precision='fp8' is not supported"),
        ("model_size", "huge", "model_size='huge' is not supported"),
        ("lite", "yes", "lite must be True or False"),
    ],
)
def test_bad_config_values_name_value_and_choices(field, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        ResourceConfig(**{field: value})


def test_autocast_and_grad_scaler_on_cpu():
    bf16 = resolve(device="cpu", precision="bf16", hardware=CPU_ONLY)
    with bf16.autocast():
        out = torch.nn.Linear(3, 2)(torch.ones(1, 3))
    assert out.dtype == torch.bfloat16
    fp32 = resolve(device="cpu", hardware=CPU_ONLY)
    with fp32.autocast():
        assert torch.nn.Linear(3, 2)(torch.ones(1, 3)).dtype == torch.float32
    assert not bf16.grad_scaler().is_enabled()


def test_int8_base_with_lora_adapters_trains_on_the_cpu():
    """LoRA on an int8 base: the adapters of *every* layer learn (gradients pass through the
    int8 layers, which torch's dynamic quantisation does not allow), the base stays put,
    and each base weight takes one byte."""
    torch.manual_seed(0)
    base = torch.nn.Sequential(
        torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 4),
    )  # fmt: skip
    reference = copy.deepcopy(base)
    x = torch.randn(256, 32)
    y = (x @ torch.randn(32, 4)).argmax(dim=1)  # a teacher the adapters can learn
    res = resolve(device="cpu", precision="int8", hardware=CPU_ONLY)
    model = res.quantize(inject_lora(base, ["0", "2", "4"], rank=4))
    assert model is base, "quantised in place"
    assert [type(layer.base).__name__ for layer in lora_layers(model).values()] == [
        "Int8Linear"
    ] * 3
    with torch.no_grad():
        assert float((model(x) - reference(x)).abs().max()) < 0.05, "close to the fp32 model"
    frozen = {k: v.clone() for k, v in model.state_dict().items() if "lora_" not in k}
    assert all(v.dtype == torch.int8 for k, v in frozen.items() if k.endswith("weight_int8"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable) == count_parameters(model).trainable
    optimizer = torch.optim.Adam(trainable, lr=0.01)
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.25 * losses[0]
    assert all(
        float(layer.lora_B.detach().abs().sum()) > 0 for layer in lora_layers(model).values()
    )
    assert all(torch.equal(model.state_dict()[k], v) for k, v in frozen.items())
    with pytest.raises(TypeError, match="cannot merge into a base layer of type Int8Linear"):
        lora_layers(model)["0"].merge()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in frozen.items()), "nothing lost"


def test_int8_refuses_what_cannot_work():
    with pytest.raises(
        ValueError, match="no frozen nn.Linear layer to quantise; int8 weights cannot be trained"
    ):
        quantize_frozen_linear(torch.nn.Sequential(torch.nn.Linear(4, 2)))
    on_meta = torch.nn.Linear(4, 2, device="meta").requires_grad_(False)
    with pytest.raises(
        ResourceUnavailableError, match="supported on the CPU only; the model is on meta"
    ):
        quantize_frozen_linear(torch.nn.Sequential(on_meta))
    with pytest.raises(
        ResourceUnavailableError, match="precision='int8' is not supported on 'cuda'"
    ):
        resolve(device="cuda", precision="int8", hardware=GPU_BOX)
    with pytest.raises(TypeError, match="linear must be a torch.nn.Linear, got ReLU"):
        Int8Linear(torch.nn.ReLU())
    model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    assert resolve(device="cpu", hardware=CPU_ONLY).quantize(model) is model
    assert type(model[0]) is torch.nn.Linear, "fp32 leaves the model alone"


def test_int8_layer_matches_its_float_layer_and_keeps_partly_trainable_layers():
    torch.manual_seed(1)
    frozen, head = torch.nn.Linear(16, 8), torch.nn.Linear(8, 3)
    frozen.requires_grad_(False)
    model = quantize_frozen_linear(torch.nn.Sequential(frozen, torch.nn.Tanh(), head))
    assert type(model[0]).__name__ == "Int8Linear" and model[2] is head, "trainable head stays"
    weight = frozen.weight
    assert float((model[0].weight - weight).abs().max()) <= float(weight.abs().max()) / 254 + 1e-7
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(torch.randn(2, 16)).dtype == torch.bfloat16


def test_pick_by_model_size():
    res = resolve(device="cpu", model_size="large", hardware=CPU_ONLY)
    assert res.pick({"small": 1, "medium": 2, "large": 3}) == 3
    with pytest.raises(ValueError, match="no value given for model_size='large'"):
        res.pick({"small": 1})
    with pytest.raises(ValueError, match="unknown model sizes 'tiny'"):
        res.pick({"tiny": 0, "large": 3})


def test_config_reports_every_problem_with_did_you_mean():
    with pytest.raises(ConfigError) as info:
        ResourceConfig.from_dict({"device": "tpu", "precison": "bf16", "lite": "yes"})
    assert info.value.problems == [
        "unknown key 'precison' (did you mean 'precision'?); accepted keys: 'allow_fallback', "
        "'device', 'lite', 'model_size', 'precision'.",
        "device='tpu' is not supported; expected one of 'auto', 'cpu', 'cuda', 'mps'.",
        "lite must be True or False, got 'yes' (str).",
    ]
    with pytest.raises(ConfigError, match="unknown key 'gpu'"):
        resolve(ResourceConfig(), gpu=True)
    assert ResourceConfig.from_dict({"lite": None, "precision": "bf16"}).precision == "bf16"
    assert ResourceConfig.from_dict(ResourceConfig(device="cpu").to_dict()) == ResourceConfig(
        device="cpu"
    )
