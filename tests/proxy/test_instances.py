"""Instance selection policies and discovered-instance expiry."""

from __future__ import annotations

import pytest

from proxy.config import InstanceSpec
from proxy.instances import InstancePool, NoInstanceError
from tests.waiting import wait_for

SPECS = [InstanceSpec("http://a:1"), InstanceSpec("http://b:1"), InstanceSpec("http://c:1")]


def test_round_robin_cycles_in_order() -> None:
    pool = InstancePool("decode", "round_robin", SPECS)
    picked = []
    for _ in range(7):
        inst = pool.acquire()
        picked.append(inst.url.split("//")[1][0])
        pool.release(inst)
    assert picked == ["a", "b", "c", "a", "b", "c", "a"]


def test_round_robin_ignores_load() -> None:
    pool = InstancePool("decode", "round_robin", SPECS)
    held = [pool.acquire() for _ in range(4)]  # a, b, c, a: a has 2 outstanding
    assert [i.url for i in held] == ["http://a:1", "http://b:1", "http://c:1", "http://a:1"]
    assert pool.acquire().url == "http://b:1"


def test_least_outstanding_picks_the_idlest() -> None:
    pool = InstancePool("decode", "least_outstanding", SPECS)
    a, b, c = (pool.acquire() for _ in range(3))  # ties spread round robin
    assert [a.url, b.url, c.url] == ["http://a:1", "http://b:1", "http://c:1"]
    pool.release(b)
    assert pool.acquire() is b  # the only one with 0 in flight
    pool.release(a)
    pool.release(c)
    second_a = pool.acquire()
    assert second_a.outstanding == 1 and second_a in (a, c)
    counts = {i.url: i.outstanding for i in pool.instances()}
    assert sorted(counts.values()) == [0, 1, 1]


def test_outstanding_counts_return_to_zero() -> None:
    pool = InstancePool("prefill", "least_outstanding", SPECS)
    held = [pool.acquire() for _ in range(10)]
    assert sum(i.outstanding for i in pool.instances()) == 10
    for inst in held:
        pool.release(inst)
    assert all(i.outstanding == 0 for i in pool.instances())
    assert sum(i.served for i in pool.instances()) == 10


def test_empty_pool_says_which_role() -> None:
    with pytest.raises(NoInstanceError, match="no prefill instance"):
        InstancePool("prefill", "round_robin").acquire()


def test_discovered_instances_expire_static_ones_stay() -> None:
    pool = InstancePool("decode", "round_robin", SPECS[:1])
    assert pool.register("http://d:1", "d:22001", ttl_s=0.05) is True
    assert pool.register("http://d:1", "d:22001", ttl_s=0.05) is False  # a heartbeat, not new
    assert [i.url for i in pool.instances()] == ["http://a:1", "http://d:1"]
    wait_for(lambda: len(pool.instances()) == 1, "the discovered instance to expire", timeout_s=5)
    assert [i.url for i in pool.instances()] == ["http://a:1"]


def test_heartbeat_updates_kv_address() -> None:
    pool = InstancePool("decode", "round_robin")
    pool.register("http://d:1", "d:22001", ttl_s=60)
    assert pool.register("http://d:1", "d:22009", ttl_s=60) is True
    assert pool.acquire().kv_address == "d:22009"
