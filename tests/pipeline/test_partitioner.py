"""Kafka's default partitioner in the core (pipeline/partitioner.py): the Java client's murmur2,
checked against Kafka's own test values and against aiokafka's implementation (the Python
client's, which the worker used before); tests/integration/test_producer.py and test_replay.py
check it against where librdkafka puts keyed records on a real broker."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from pipeline.partitioner import murmur2, partition_of


def signed(value: int) -> int:
    return value - (1 << 32) if value & 0x80000000 else value


@pytest.mark.parametrize(
    ("key", "java"),
    [  # Kafka's UtilsTest.testMurmur2: Utils.murmur2 as a signed 32-bit int
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_gives_the_java_clients_values(key: bytes, java: int) -> None:
    assert signed(murmur2(key)) == java


@given(st.binary(max_size=64))
def test_murmur2_agrees_with_aiokafka_for_any_key(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)


@given(st.binary(min_size=1, max_size=40), st.integers(min_value=1, max_value=500))
def test_a_partition_is_the_positive_hash_modulo_the_count(key: bytes, partitions: int) -> None:
    assert partition_of(key, partitions) == (aiokafka_murmur2(key) & 0x7FFFFFFF) % partitions


def test_every_tail_length_and_high_bytes() -> None:
    """Keys of 0 to 7 bytes of 0xFF: every tail branch, every byte's top bit set."""
    for n in range(8):
        key = b"\xff" * n
        assert murmur2(key) == aiokafka_murmur2(key)
        assert 0 <= murmur2(key) <= 0xFFFFFFFF
