"""The daemon's check for a group member left without partitions (issue 8, item 20), driven by an
injected clock: a member owed an assignment for longer than its limit reports a problem (shown in
/status, /readyz and /metrics); an answer from the group, even one with no partitions, clears it;
time while no wanted topic exists does not count."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.sources.kafka.watch import MIN_LIMIT, AssignmentWatch, limit_for


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_member_owed_an_assignment_past_the_limit_reports_it() -> None:
    clock = Clock()
    watch = AssignmentWatch(30.0, clock)
    assert watch.problem() is None and watch.unassigned_seconds() == 0
    watch.waiting()  # subscribed
    clock.now += 30.0
    assert watch.problem() is None, "at the limit is not past it"
    clock.now += 15.0
    problem = watch.problem()
    assert problem is not None and "no partitions assigned for 45 s" in problem and "rebalance" in problem
    watch.assigned()  # the group answered
    assert watch.problem() is None and watch.unassigned_seconds() == 0


def test_an_empty_assignment_is_an_answer_and_a_revocation_starts_a_new_wait() -> None:
    """More members than partitions leaves one idle: that member is fine."""
    clock = Clock()
    watch = AssignmentWatch(30.0, clock)
    watch.waiting()
    clock.now += 3
    watch.assigned()  # on_assign with no partition
    clock.now += 3600
    assert watch.problem() is None
    watch.waiting()  # revoked: a rebalance began
    clock.now += 31
    assert watch.problem() is not None


def test_a_subscription_that_matches_no_topic_is_not_a_stuck_rebalance() -> None:
    clock = Clock()
    watch = AssignmentWatch(30.0, clock)
    watch.waiting()
    watch.topics_exist(False)
    clock.now += 600
    assert watch.problem() is None and watch.unassigned_seconds() == 0
    watch.topics_exist(True)  # the topic is created: the group owes an assignment from now on
    clock.now += 29
    assert watch.problem() is None
    clock.now += 2
    assert watch.problem() is not None


def test_the_limit_is_twice_the_session_timeout_and_at_least_30_s() -> None:
    assert limit_for({}) == 90.0  # librdkafka's default session.timeout.ms is 45 s
    assert limit_for({"session.timeout.ms": 6000}) == MIN_LIMIT
    assert limit_for({"session.timeout.ms": "60000"}) == 120.0
    assert limit_for({"session.timeout.ms": "nonsense"}) == 90.0


EVENTS = st.one_of(
    st.tuples(st.just("advance"), st.floats(min_value=0, max_value=50, allow_nan=False)),
    st.tuples(st.just("waiting"), st.none()),
    st.tuples(st.just("assigned"), st.none()),
    st.tuples(st.just("topics"), st.booleans()),
)


@settings(max_examples=100)
@given(st.lists(EVENTS, max_size=40), st.floats(min_value=1, max_value=100, allow_nan=False))
def test_generated_histories_agree_with_a_reference_model(
        events: list[tuple[str, float | bool | None]], limit: float) -> None:
    """Any order of subscriptions, revocations, assignments, metadata and time: the problem shows
    exactly when an assignment has been due for longer than the limit while a topic existed."""
    clock = Clock()
    watch = AssignmentWatch(limit, clock)
    due_since: float | None = None
    exist: bool | None = None
    for kind, value in events:
        if kind == "advance":
            assert isinstance(value, float)
            clock.now += value
        elif kind == "waiting":
            watch.waiting()
            due_since = clock.now if due_since is None else due_since
        elif kind == "assigned":
            watch.assigned()
            due_since = None
        else:
            assert isinstance(value, bool)
            watch.topics_exist(value)
            if value and exist is False and due_since is not None:
                due_since = clock.now
            exist = value
        expected = 0.0 if due_since is None or exist is False else clock.now - due_since
        assert watch.unassigned_seconds() == expected
        problem = watch.problem()
        assert (problem is not None) == (expected > limit)
        if problem is not None:
            assert f"{expected:.0f} s" in problem and "Traceback" not in problem
