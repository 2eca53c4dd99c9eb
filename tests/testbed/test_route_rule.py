"""The one per-request route rule (testbed/route_rule.py) on cases worked out by hand, and the proof that
the proxy and the planner both use it rather than a copy."""

from __future__ import annotations

import pytest

import disagg.plan
import planner.break_even
import planner.search
import planner.setups
import planner.simulate
import proxy.handler
import proxy.policy
from planner.setups import Setup
from proxy.config import ConfigError, InstanceSpec, ProxyConfig
from proxy.policy import route_policy_for
from proxy.state import ProxyState
from testbed.route_rule import LOCAL, SPLIT, RoutePolicy, check_route_connector, parse_route_policy


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("split", RoutePolicy("split")),
        ("local", RoutePolicy("local")),
        ("threshold:1024", RoutePolicy("threshold", threshold=1024)),
        ("load", RoutePolicy("load", p_tokens=4096, d_requests=32)),
        ("load:8000", RoutePolicy("load", p_tokens=8000, d_requests=32)),
        ("load:8000:16", RoutePolicy("load", p_tokens=8000, d_requests=16)),
        (" load:0 ", RoutePolicy("load", p_tokens=0, d_requests=32)),
    ],
)
def test_policies_parse_and_print_back(text: str, expected: RoutePolicy) -> None:
    policy = parse_route_policy(text)
    assert policy == expected
    assert parse_route_policy(policy.name) == policy


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("always", "unknown policy 'always'"),
        ("LOAD", "unknown policy 'LOAD'"),  # the spellings are lower case; the planner lowers its input
        ("threshold", "needs its prompt length"),
        ("threshold:-3", "whole number >= 0"),
        ("threshold:1k", "whole number >= 0"),
        ("load:1000:x", "D_REQUESTS must be a whole number >= 0"),
        ("split:1", "takes no parameter"),
        ("load:1:2:3", "too many parameters"),
    ],
)
def test_bad_policies_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        parse_route_policy(text)
    line = str(err.value)
    assert "\n" not in line and line.endswith("use split, local, threshold:N or load[:P_TOKENS[:D_REQUESTS]]")


def test_a_policy_of_no_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown policy 'sometimes'"):
        RoutePolicy("sometimes")


# (prompt tokens, least-loaded prefill instance's tokens in flight, decode instance's outstanding) -> path
RULE_BY_HAND = {
    "split": [((0, 0, 0), SPLIT), ((5000, 99999, 0), SPLIT)],
    "local": [((0, 0, 0), LOCAL), ((5000, 0, 99), LOCAL)],
    "threshold:100": [
        ((99, 0, 0), LOCAL),
        ((100, 0, 0), SPLIT),  # >= N splits
        ((5000, 0, 0), SPLIT),
        ((0, 0, 0), LOCAL),
        ((99, 5000, 0), LOCAL),  # the load of either side does not count
        ((100, 0, 99), SPLIT),
    ],
    "threshold:0": [((0, 0, 0), SPLIT)],  # every prompt has >= 0 tokens
    "load:1000:4": [
        ((10, 999, 0), SPLIT),  # P not backed up
        ((10, 1000, 3), LOCAL),  # backed up and D has room
        ((10, 1000, 4), SPLIT),  # D full too: the prefill instance still takes it
        ((10, 5000, 0), LOCAL),
        ((5000, 999, 0), SPLIT),  # the prompt's own length does not count
    ],
    "load": [((0, 4095, 0), SPLIT), ((0, 4096, 31), LOCAL), ((0, 4096, 32), SPLIT)],  # 4096 and 32
    "load:0": [((0, 0, 31), LOCAL), ((0, 0, 32), SPLIT)],  # P always "backed up": D's room decides
}


@pytest.mark.parametrize("text", sorted(RULE_BY_HAND))
def test_the_rule_by_hand(text: str) -> None:
    policy, cases = parse_route_policy(text), RULE_BY_HAND[text]
    assert [policy.decide(*case) for case, _ in cases] == [path for _, path in cases]


def test_what_each_kind_reads() -> None:
    kinds = [parse_route_policy(t) for t in ("split", "local", "threshold:5", "load")]
    assert [(p.needs_tokens, p.uses_prefill) for p in kinds] == [
        (False, True),
        (False, False),
        (True, True),
        (True, True),
    ]


def test_the_proxy_and_the_planner_use_this_rule_not_a_copy() -> None:
    """The proxy's policy object is the shared class; every planner module that reads a route reads it
    with the shared parser; both print one spelling per rule; the proxy and the launcher refuse a local
    route on the same connectors."""
    config = ProxyConfig(
        connector="example",
        prefill=[InstanceSpec("http://127.0.0.1:1")],
        decode=[InstanceSpec("http://127.0.0.1:2")],
        policy="load:1000",
    )
    state = ProxyState(config)
    assert type(state.policy) is RoutePolicy and state.policy == parse_route_policy("load:1000:32")
    for module in (planner.setups, planner.simulate, planner.search, planner.break_even):
        assert module.parse_route_policy is parse_route_policy, module.__name__
    assert proxy.handler.SPLIT is SPLIT and proxy.handler.LOCAL is LOCAL
    # which connectors can serve a local request: one check, asked by the proxy and the launcher
    assert proxy.policy.check_route_connector is disagg.plan.check_route_connector is check_route_connector
    assert Setup(1, 1, route="load:1000").route == state.policy.name == "load:1000:32"


def test_the_proxy_wraps_a_bad_policy_in_its_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown policy 'sometimes'; use split"):
        route_policy_for("sometimes", "example")
    with pytest.raises(ConfigError, match="passthrough never splits"):
        route_policy_for("threshold:10", "passthrough")
    with pytest.raises(ConfigError, match="P2P NCCL kv_consumer cannot"):
        route_policy_for("local", "p2p_nccl")
    assert route_policy_for("split", "p2p_nccl") == RoutePolicy(SPLIT)
    assert route_policy_for("local", "nixl") == RoutePolicy(LOCAL)
