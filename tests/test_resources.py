import argparse
import json

import pytest
import torch

from mlcourse.resources import (
    Hardware,
    ResourceConfig,
    ResourceFallbackWarning,
    ResourceUnavailableError,
    load_mapping,
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


def test_int8_quantises_linear_layers_for_inference():
    model = torch.nn.Sequential(torch.nn.Linear(8, 4))
    res = resolve(device="cpu", precision="int8", hardware=CPU_ONLY)
    quantised = res.quantize(model)
    x = torch.randn(5, 8)
    assert (
        "Quantized" in type(quantised[0]).__name__ or "quantized" in type(quantised[0]).__module__
    )
    assert torch.allclose(quantised(x), model(x), atol=0.1)
    assert resolve(device="cpu", hardware=CPU_ONLY).quantize(model) is model


def test_pick_by_model_size():
    res = resolve(device="cpu", model_size="large", hardware=CPU_ONLY)
    assert res.pick({"small": 1, "medium": 2, "large": 3}) == 3
    with pytest.raises(ValueError, match="no value given for model_size='large'"):
        res.pick({"small": 1})
    with pytest.raises(ValueError, match="unknown model sizes 'tiny'"):
        res.pick({"tiny": 0, "large": 3})


def test_config_from_json_yaml_and_unknown_keys(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"device": "cpu", "precision": "bf16"}))
    (tmp_path / "b.yaml").write_text("device: cpu\nlite: false\n")
    (tmp_path / "c.yaml").write_text("device: cpu\nprecison: bf16\n")
    assert ResourceConfig.from_file(tmp_path / "a.json").precision == "bf16"
    assert ResourceConfig.from_file(tmp_path / "b.yaml").lite is False
    with pytest.raises(
        ValueError, match="unknown resource config keys 'precison'; accepted keys are"
    ):
        ResourceConfig.from_file(tmp_path / "c.yaml")
    with pytest.raises(ValueError, match="has suffix '.toml'"):
        load_mapping(tmp_path / "d.toml")
    (tmp_path / "e.yaml").write_text("- a list\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_mapping(tmp_path / "e.yaml")
    (tmp_path / "f.yaml").write_text("device: cpu\nprecision: bf16\ndevice: cuda\n")
    with pytest.raises(ValueError, match=r"key 'device' appears twice \(lines 1 and 3\)"):
        ResourceConfig.from_file(tmp_path / "f.yaml")


def test_config_from_argparse():
    parser = argparse.ArgumentParser()
    ResourceConfig.add_arguments(parser)
    config = ResourceConfig.from_args(
        parser.parse_args(["--device", "cpu", "--full", "--allow-fallback"])
    )
    assert config == ResourceConfig(device="cpu", lite=False, allow_fallback=True)
    assert ResourceConfig.from_args(parser.parse_args([])) == ResourceConfig()
    with pytest.raises(SystemExit):
        parser.parse_args(["--device", "tpu"])
