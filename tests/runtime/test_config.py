"""Knob checks (config.py) and the config classes that use them: every bad value is a
ConfigError naming the knob and the allowed range, at construction."""

import math

import pytest

from embedrt.batching import BatchPlan
from embedrt.config import check_choice, check_int, check_number
from embedrt.errors import ConfigError
from embedrt.jobs import JobConfig
from embedrt.ray import RayJobConfig
from embedrt.serve import BatchingConfig, Limits, ServerConfig


@pytest.mark.parametrize("value", [0, -1, 11, 1.0, "3", True, None, [], math.nan])
def test_check_int_refuses_anything_but_an_integer_in_range(value):
    with pytest.raises(ConfigError, match=r"knob must be an integer from 1 to 10, got "):
        check_int("knob", value, most=10)


def test_check_int_takes_the_bounds_and_none_where_allowed():
    for ok in (1, 5, 10):
        check_int("knob", ok, most=10)
    check_int("knob", None, none=True)
    check_int("knob", 0, least=0)
    with pytest.raises(ConfigError, match="or None, got -1 .why."):
        check_int("knob", -1, none=True, why=" (why)")


@pytest.mark.parametrize("value", [-0.1, 2.5, math.inf, math.nan, "1", True, None])
def test_check_number_refuses_non_finite_and_out_of_range(value):
    with pytest.raises(ConfigError, match="knob must be a number from 0 to 2"):
        check_number("knob", value, 0, 2)


def test_check_choice_names_the_choices():
    check_choice("mode", "a", ("a", "b"))
    with pytest.raises(ConfigError, match="mode 'c' is not one of a, b"):
        check_choice("mode", "c", ("a", "b"))


@pytest.mark.parametrize(
    ("make", "knob"),
    [
        (lambda: BatchPlan(max_tokens=0), "max_tokens"),
        (lambda: BatchPlan(run_cost=-1), "run_cost"),
        (lambda: JobConfig(batch_size=1 << 20), "batch_size"),
        (lambda: JobConfig(shard_rows=0), "shard_rows"),
        (lambda: JobConfig(on_error="ignore"), "on_error"),
        (lambda: JobConfig(progress="loud"), "progress"),
        (lambda: JobConfig(log_interval_s=-1), "log_interval_s"),
        (lambda: RayJobConfig(actors=0), "actors"),
        (lambda: RayJobConfig(actor_cpus=0), "actor_cpus"),
        (lambda: RayJobConfig(batch_tokens=1 << 30), "batch_tokens"),
        (lambda: RayJobConfig(threads=-2), "threads"),
        (lambda: BatchingConfig(max_wait_ms=math.inf), "max_wait_ms"),
        (lambda: BatchingConfig(max_batch_requests=0), "max_batch_requests"),
        (lambda: Limits(max_body_bytes=0), "max_body_bytes"),
        (lambda: ServerConfig(port=70000), "port"),
        (lambda: ServerConfig(io_threads=0), "io_threads"),
        (lambda: ServerConfig(graceful_timeout_s=-1), "graceful_timeout_s"),
    ],
)
def test_config_classes_refuse_bad_values_naming_the_knob(make, knob):
    with pytest.raises(ConfigError, match=f"^{knob} "):
        make()
