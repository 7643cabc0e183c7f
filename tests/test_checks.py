"""minilora.checks: check_int, check_number and check_choice, the argument checks of the public API."""

import numpy as np
import pytest

from minilora.checks import ArgumentTypeError, check_choice, check_int, check_number

# --- ArgumentTypeError ------------------------------------------------------------------------------


def test_argument_type_error_is_both_a_type_error_and_a_value_error():
    assert issubclass(ArgumentTypeError, TypeError) and issubclass(ArgumentTypeError, ValueError)


@pytest.mark.parametrize("caught", [TypeError, ValueError])
def test_a_wrong_type_is_caught_by_either_except_clause(caught):
    with pytest.raises(caught):
        check_int(1.5, "r")


# --- check_int --------------------------------------------------------------------------------------

def test_check_int_returns_a_python_int():
    assert check_int(3, "r", 1, 8) == 3 and type(check_int(3, "r", 1, 8)) is int


@pytest.mark.parametrize("value", [np.int8(3), np.int32(3), np.int64(3), np.uint16(3)])
def test_check_int_accepts_numpy_integers(value):
    out = check_int(value, "r", 1, 8)
    assert out == 3 and type(out) is int


@pytest.mark.parametrize("value", [True, False, np.bool_(True)])
def test_check_int_refuses_bool(value):
    with pytest.raises(ArgumentTypeError, match="r must be an int"):
        check_int(value, "r")


@pytest.mark.parametrize("value", [1.5, 2.0, "3", None, np.float64(2.0)])
def test_check_int_refuses_other_types_naming_the_type(value):
    with pytest.raises(ArgumentTypeError, match=f"r must be an int .*got {type(value).__name__}"):
        check_int(value, "r")


@pytest.mark.parametrize("value", [0, 9, -1])
def test_check_int_refuses_values_outside_the_range(value):
    with pytest.raises(ValueError, match=rf"r must be an int in \[1, 8\], got {value}") as info:
        check_int(value, "r", 1, 8)
    assert not isinstance(info.value, TypeError)  # a bad value, not a bad type


@pytest.mark.parametrize("value", [1, 8])
def test_check_int_accepts_both_bounds(value):
    assert check_int(value, "r", 1, 8) == value


def test_check_int_with_only_a_lower_bound():
    assert check_int(10**9, "n", 1) == 10**9
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        check_int(0, "n", 1)


def test_check_int_with_only_an_upper_bound():
    assert check_int(-5, "k", high=3) == -5
    with pytest.raises(ValueError, match="k must be an int <= 3, got 4"):
        check_int(4, "k", high=3)


def test_check_int_adds_the_reason_to_the_message():
    with pytest.raises(ValueError, match=r"r must be an int in \[1, 4\] \(min\(d_in, d_out\)\), got 5"):
        check_int(5, "r", 1, 4, " (min(d_in, d_out))")


# --- check_number -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [2, 2.0, np.float32(2.0), np.float64(2.0), np.int64(2)])
def test_check_number_accepts_python_and_numpy_reals_as_float(value):
    out = check_number(value, "lr")
    assert out == 2.0 and type(out) is float


@pytest.mark.parametrize("value", [True, np.bool_(False)])
def test_check_number_refuses_bool(value):
    with pytest.raises(ArgumentTypeError, match="lr must be a real number"):
        check_number(value, "lr")


@pytest.mark.parametrize("value", ["0.1", None, 1j, [1.0]])
def test_check_number_refuses_other_types(value):
    with pytest.raises(ArgumentTypeError, match="lr must be a real number"):
        check_number(value, "lr")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), np.nan])
def test_check_number_refuses_nan_and_infinity(value):
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        check_number(value, "alpha")


def test_check_number_closed_bounds_include_the_ends():
    assert check_number(0.0, "p", 0.0, 1.0) == 0.0 and check_number(1.0, "p", 0.0, 1.0) == 1.0


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_check_number_open_bounds_exclude_the_ends(value):
    with pytest.raises(ValueError, match=r"dropout must be a finite number in \(0.0, 1.0\)"):
        check_number(value, "dropout", 0.0, 1.0, low_open=True, high_open=True)


def test_check_number_half_open_range_is_written_as_such():
    with pytest.raises(ValueError, match=r"dropout must be a finite number in \[0.0, 1.0\), got 1.0"):
        check_number(1.0, "dropout", 0.0, 1.0, high_open=True)


@pytest.mark.parametrize("value", [-0.1, 1.1])
def test_check_number_refuses_values_outside_the_range_naming_the_parameter(value):
    with pytest.raises(ValueError, match=rf"accuracy must be a finite number in \[0.0, 1.0\], got {value}"):
        check_number(value, "accuracy", 0.0, 1.0)


def test_check_number_with_one_open_bound_says_greater_than():
    with pytest.raises(ValueError, match="lr must be a finite number > 0.0, got 0.0"):
        check_number(0.0, "lr", 0.0, low_open=True)


# --- check_choice -------------------------------------------------------------------------------------

def test_check_choice_returns_the_value():
    assert check_choice("gaussian", "init", ("kaiming", "gaussian")) == "gaussian"


def test_check_choice_lists_the_choices():
    with pytest.raises(ValueError, match=r"init must be one of \('kaiming', 'gaussian'\), got 'xavier'"):
        check_choice("xavier", "init", ("kaiming", "gaussian"))


def test_check_choice_refuses_an_unhashable_value_with_a_value_error():
    with pytest.raises(ValueError, match="init must be one of"):
        check_choice(["kaiming"], "init", {"kaiming", "gaussian"})
