import pytest

from mlcourse.arguments import check_bool, check_choice, check_float, check_int, check_keys


def test_check_choice_names_value_and_choices():
    assert check_choice("device", "cpu", ("cpu", "cuda")) == "cpu"
    with pytest.raises(
        ValueError, match=r"device='tpu' is not supported; expected one of 'cpu', 'cuda'"
    ):
        check_choice("device", "tpu", ("cpu", "cuda"))


def test_check_int_rejects_bool_float_and_out_of_range():
    assert check_int("n", 3, min_value=1) == 3
    with pytest.raises(TypeError, match="n must be an integer, got True"):
        check_int("n", True)
    with pytest.raises(TypeError, match=r"got 2.5 \(float\)"):
        check_int("n", 2.5)
    with pytest.raises(ValueError, match=r"n=0 is out of range; expected an integer in \[1, inf\)"):
        check_int("n", 0, min_value=1)


def test_check_float_bounds_and_finiteness():
    assert check_float("lr", 1) == 1.0
    with pytest.raises(
        ValueError, match=r"lr=0.0 is out of range; expected a number in \(0.0, inf\)"
    ):
        check_float("lr", 0.0, min_value=0.0, min_inclusive=False)
    with pytest.raises(ValueError, match="lr must be finite"):
        check_float("lr", float("nan"))
    with pytest.raises(TypeError, match="lr must be a real number"):
        check_float("lr", "0.1")


def test_check_bool_and_keys():
    assert check_bool("lite", False) is False
    with pytest.raises(TypeError, match="lite must be True or False, got 1"):
        check_bool("lite", 1)
    with pytest.raises(
        ValueError, match=r"unknown config keys 'lr_rate'; accepted keys are 'epochs', 'lr'"
    ):
        check_keys("config keys", ["lr_rate", "lr"], ["lr", "epochs"])
