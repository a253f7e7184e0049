"""tune_ext.validate: each check names the argument and the rule; the helpers built on it keep
their messages."""
import math
import subprocess
import sys

import numpy as np
import pytest

from tune_ext import validate as v

BAD_NUMBERS = [True, "1", None, math.nan, math.inf, -math.inf, [1]]


@pytest.mark.parametrize("check, ok, bad, rule", [
    (v.finite_number, [0, -2.5, np.float64(3)], BAD_NUMBERS, "a finite number"),
    (v.positive, [1e-9, 3, np.int64(2)], BAD_NUMBERS + [0, -1], "a finite number > 0"),
    (v.non_negative, [0, 0.0, 7], BAD_NUMBERS + [-1e-12], "a finite number >= 0"),
    (v.positive_int, [1, 3.0, np.int64(4)], BAD_NUMBERS + [0, 2.5, -3], "a positive int"),
    (v.flag, [True, False], [1, 0, "yes", None], "True or False"),
    (v.min_or_max, ["min", "max"], ["minimize", None, "MAX"], "'min' or 'max'"),
])
def test_checks_name_the_argument_and_the_rule(check, ok, bad, rule):
    for value in ok:
        assert check("x", value) == value
    for value in bad:
        with pytest.raises(ValueError) as e:
            check("config['x']", value)
        assert str(e.value) == f"config['x'] must be {rule}, got {value!r}"


def test_bounds_and_intervals():
    assert v.at_least("reduction_factor", 2, 2) == 2
    with pytest.raises(ValueError, match=r"^reduction_factor must be >= 2, got 1$"):
        v.at_least("reduction_factor", 1, 2)
    with pytest.raises(ValueError, match=r"^reduction_factor must be >= 2, got nan$"):
        v.at_least("reduction_factor", math.nan, 2)
    assert v.int_at_least("popsize", None, 2, allow_none=True) is None
    assert v.int_at_least("n", np.int64(0), 0) == 0
    for bad in (1, 2.0, True, "3"):
        with pytest.raises(ValueError, match=r"^popsize must be an int >= 2 or None, got "):
            v.int_at_least("popsize", bad, 2, allow_none=True)
    assert v.in_interval("f", 0, 0, 1) == 0 and v.in_interval("f", 1, 0, 1) == 1
    for bad in (0, 100, -1, math.nan, "5"):
        with pytest.raises(ValueError, match=r"^top_n_percent must be in \(0, 100\), got "):
            v.in_interval("top_n_percent", bad, 0, 100, low_closed=False, high_closed=False)
    with pytest.raises(ValueError, match=r"^m must be in \[0, 1\), got 1$"):
        v.in_interval("m", 1, 0, 1, high_closed=False)


def test_one_of_lists_the_choices_and_the_closest():
    assert v.one_of("variant", "stopping", ("promotion", "stopping")) == "stopping"
    with pytest.raises(ValueError) as e:
        v.one_of("variant", "promote", ("promotion", "stopping"))
    assert str(e.value) == ("variant must be one of promotion, stopping; got 'promote'; did you "
                            "mean 'promotion'?")
    with pytest.raises(ValueError, match=r"^x must be one of a, b; got 'zzz'$"):  # none close
        v.one_of("x", "zzz", ("a", "b"))
    assert v.MODES == ("min", "max")


def test_helpers_built_on_it_keep_their_messages():
    """The families the issue names, now thin over validate (their callers' messages)."""
    from trainables.config import non_negative, positive_int
    from tune_ext.hypergrad.outer import SignDescent
    from tune_ext.schedulers.brackets import check_geometry, check_positive

    with pytest.raises(ValueError, match=r"^max_t must be a finite number > 0, got 0$"):
        check_positive("max_t", 0)
    with pytest.raises(ValueError, match=r"^reduction_factor must be >= 2, got 1$"):
        check_geometry(9, 1, 1)
    with pytest.raises(ValueError, match=r"^max_t must be >= min_t"):
        check_geometry(3, 9, 3)
    assert positive_int({"e": 3}, "e") == 3 and non_negative({}, "m", 0.5) == 0.5
    with pytest.raises(ValueError, match=r"^config\['e'\] must be a positive int, got 0$"):
        positive_int({"e": 0}, "e")
    with pytest.raises(ValueError, match=r"^config is missing 'e' \(a positive int\)$"):
        positive_int({}, "e")
    with pytest.raises(ValueError, match=r"^config\['m'\] must be a finite number >= 0, got -1"):
        non_negative({"m": -1}, "m")
    with pytest.raises(ValueError, match=r"^step_sizes\['lr'\] must be a finite number >= 0"):
        SignDescent({"lr": -1.0})


def test_importing_it_imports_neither_ray_nor_torch():
    code = ("import sys, tune_ext.validate; "
            "print(sorted(m for m in ('ray', 'torch', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_saved_version_refuses_other_versions_and_non_states():
    state = {"version": 3, "x": 1}
    assert v.saved_version("A", "f.json", "thing state", state, 3, "fix it") is state
    with pytest.raises(ValueError, match=r"^A: f.json has version 2, this tune-ext reads version "
                                         r"3; resume with the tune-ext that wrote it"):
        v.saved_version("A", "f.json", "thing state", {"version": 2}, 3, "fix it")
    for bad in ([3], {"x": 1}, None):
        with pytest.raises(ValueError, match=r"^A: f.json is not a tune-ext thing state \(got "
                                             r"\w+\); fix it$"):
            v.saved_version("A", "f.json", "thing state", bad, 3, "fix it")
