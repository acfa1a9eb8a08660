"""The retry policy is a value: backoff, longest wait, deadline and what is retriable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from conduitd.config import ServiceConfig
from conduitd.errors import CheckpointConflict, ConfigError, DependencyUnreachable, TransientError
from conduitd.runtime.retry import RetryPolicy


def test_backoff_doubles_up_to_the_longest_wait_within_its_jitter() -> None:
    policy = RetryPolicy(first_wait=0.2, max_wait=1.0, jitter=0.5)
    for failures, backoff in [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (10, 1.0)]:
        for _ in range(20):
            wait = policy.wait(failures, 0.0)
            assert wait is not None and backoff * 0.5 <= wait <= backoff * 1.5


def test_without_jitter_the_waits_are_exact() -> None:
    policy = RetryPolicy(first_wait=1.0, max_wait=5.0, jitter=0.0)
    assert [policy.wait(n, 0.0) for n in range(1, 5)] == [1.0, 2.0, 4.0, 5.0]


def test_under_a_deadline_the_last_try_is_at_the_deadline_and_then_it_gives_up() -> None:
    policy = RetryPolicy(first_wait=10.0, max_wait=10.0, jitter=0.0, give_up_after=3.0)
    assert policy.wait(1, 2.5) == 0.51
    assert policy.wait(2, 3.01) is None


def test_the_service_config_makes_the_policy() -> None:
    service = ServiceConfig.model_validate({"retry_max_wait": "7s", "once_retry_timeout": "9s"})
    assert RetryPolicy.for_service(service, once=True).give_up_after == 9.0
    assert RetryPolicy.for_service(service, once=True).max_wait == 7.0
    assert RetryPolicy.for_service(service, once=False).give_up_after is None


def test_what_is_retriable_is_the_error_trees_judgement_or_the_policys_own() -> None:
    default = RetryPolicy()
    assert default.is_retriable(TransientError("x"))
    assert not default.is_retriable(ConfigError("x"))
    assert not default.is_retriable(CheckpointConflict("x"))
    assert not default.is_retriable(RuntimeError("x"))
    stricter = RetryPolicy(is_retriable=lambda exc: False)
    assert not stricter.is_retriable(TransientError("x"))


def test_service_retry_sets_backoff_deadline_and_what_is_retried() -> None:
    service = ServiceConfig.model_validate({"retry": {"first_wait": "1s", "max_wait": "4s", "jitter": 0,
                                                      "give_up_after": "2m", "retry_on": ["unreachable"]},
                                            "once_retry_timeout": "9s"})
    daemon = RetryPolicy.for_service(service, once=False)
    assert [daemon.wait(n, 0.0) for n in range(1, 5)] == [1.0, 2.0, 4.0, 4.0]
    assert daemon.give_up_after == 120.0
    assert RetryPolicy.for_service(service, once=True).give_up_after == 9.0  # the smaller deadline
    assert daemon.is_retriable(DependencyUnreachable("x"))
    assert not daemon.is_retriable(TransientError("x"))  # left out of retry_on: fails at once
    assert not daemon.is_retriable(ConfigError("x"))


def test_the_earlier_name_of_the_longest_wait_still_works_but_not_beside_the_new_one() -> None:
    assert RetryPolicy.for_service(ServiceConfig.model_validate({"retry_max_wait": "7s"}), once=False).max_wait == 7.0
    with pytest.raises(ValidationError, match="one setting"):
        ServiceConfig.model_validate({"retry_max_wait": "7s", "retry": {"max_wait": "8s"}})


@pytest.mark.parametrize(("retry", "message"), [
    ({"retry_on": ["sometimes"]}, "unreachable"),
    ({"retry_on": ["transient", "transient"]}, "each kind of error once"),
    ({"jitter": 1.5}, "less than or equal to 1"),
    ({"policy": "no-such-policy"}, "no retry policy 'no-such-policy' is installed"),
    ({"options": {"a": 1}}, "name the policy"),
    ({"first_wait": "0s"}, "at least 10ms"),
])
def test_nonsense_retry_settings_are_refused(retry: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ServiceConfig.model_validate({"retry": retry})
