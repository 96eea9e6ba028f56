"""The worker's /metrics: Prometheus conventions (counters `_total`), lag per partition, the receipt histogram."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agents.metrics import INPUT_WAIT_BUCKETS, RECEIPT_BUCKETS, Metrics, MsHistogram
from monitor.metrics import RECEIPT_BUCKETS as MONITOR_BUCKETS


def scrape(metrics: Metrics) -> dict[str, float]:
    body = metrics.render(
        [
            ("windows_open", {}, 4.0),
            ("consumer_lag", {"topic": "clearance.orders", "partition": "0"}, 7.0),
            ("consumer_lag", {"topic": "clearance.orders", "partition": "1"}, 0.0),
        ]
    )
    types = {f.name: f.type for f in text_string_to_metric_families(body)}
    assert all(types[name] == "counter" for name in types if name.startswith(("clearance_documents", "clearance_decl")))
    assert types["clearance_consumer_lag"] == "gauge" and types["clearance_outbox_resent"] == "counter"
    assert types["clearance_receipt_to_decision_seconds"] == "histogram"
    assert types["clearance_input_wait_seconds"] == "histogram"
    assert "_created" not in body
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_counters_end_in_total_and_keep_their_labels() -> None:
    m = Metrics()
    m.inc("documents_in", "clearance.orders", 3)
    m.inc("declarations_out", "RELEASED")
    m.inc("internal_errors")
    m.resent += 2
    got = scrape(m)
    assert got['clearance_documents_in_total{topic="clearance.orders"}'] == 3
    assert got['clearance_declarations_out_total{status="RELEASED"}'] == 1
    assert got["clearance_internal_errors_total"] == 1
    assert got["clearance_outbox_resent_total"] == 2
    assert got["clearance_windows_open"] == 4
    assert got['clearance_consumer_lag{partition="0",topic="clearance.orders"}'] == 7
    assert got['clearance_consumer_lag{partition="1",topic="clearance.orders"}'] == 0
    assert m.counts[("documents_in", "clearance.orders")] == 3  # the agents' tests read counts directly


def test_receipt_histogram_reaches_past_ten_minutes() -> None:
    assert RECEIPT_BUCKETS == MONITOR_BUCKETS
    assert 600.0 in RECEIPT_BUCKETS and RECEIPT_BUCKETS[-1] > 600.0
    m = Metrics()
    m.observe_receipt(decided_at_ms=5_000, received_at_ms=1_000)
    m.observe_receipt(decided_at_ms=700_000, received_at_ms=0)
    m.observe_receipt(decided_at_ms=5_000, received_at_ms=None)  # unknown: not observed
    got = scrape(m)
    assert got['clearance_receipt_to_decision_seconds_bucket{le="5.0"}'] == 1
    assert got['clearance_receipt_to_decision_seconds_bucket{le="600.0"}'] == 1
    assert got['clearance_receipt_to_decision_seconds_bucket{le="900.0"}'] == 2
    assert got["clearance_receipt_to_decision_seconds_count"] == 2
    assert got["clearance_receipt_to_decision_seconds_sum"] == 704.0


def test_two_metrics_do_not_share_a_registry() -> None:
    a, b = Metrics(), Metrics()
    a.inc("internal_errors")
    assert "clearance_internal_errors_total" not in scrape(b)


def test_input_wait_histogram_counts_each_document_in_its_bucket() -> None:
    assert tuple(sorted(INPUT_WAIT_BUCKETS)) == INPUT_WAIT_BUCKETS and 600.0 in INPUT_WAIT_BUCKETS
    m = Metrics()
    for waited_ms in (0, 25, 26, 400, 500, 501, 7_200_000):
        m.observe_input_wait(waited_ms)
    got = scrape(m)
    assert got['clearance_input_wait_seconds_bucket{le="0.025"}'] == 2, "a bound is inclusive (le)"
    assert got['clearance_input_wait_seconds_bucket{le="0.05"}'] == 3
    assert got['clearance_input_wait_seconds_bucket{le="0.5"}'] == 5
    assert got['clearance_input_wait_seconds_bucket{le="1.0"}'] == 6
    assert got['clearance_input_wait_seconds_bucket{le="3600.0"}'] == 6
    assert got['clearance_input_wait_seconds_bucket{le="+Inf"}'] == 7
    assert got["clearance_input_wait_seconds_count"] == 7
    assert got["clearance_input_wait_seconds_sum"] == 7_201.452


def test_a_receipt_on_a_bound_counts_in_that_bucket_and_bounds_are_whole_milliseconds() -> None:
    m = Metrics()
    m.observe_receipt(decided_at_ms=5_000, received_at_ms=0)  # exactly 5 s: le="5.0"
    m.observe_receipt(decided_at_ms=5_001, received_at_ms=0)
    m.observe_receipt(decided_at_ms=0, received_at_ms=100)  # a clock behind: 0
    got = scrape(m)
    assert got['clearance_receipt_to_decision_seconds_bucket{le="0.1"}'] == 1
    assert got['clearance_receipt_to_decision_seconds_bucket{le="5.0"}'] == 2
    assert got['clearance_receipt_to_decision_seconds_bucket{le="10.0"}'] == 3
    assert got["clearance_receipt_to_decision_seconds_sum"] == 10.001
    with pytest.raises(ValueError, match="whole milliseconds"):
        MsHistogram("h", "a bound between two milliseconds", (0.0005, 1.0))
    with pytest.raises(ValueError, match="whole milliseconds"):
        MsHistogram("h", "bounds out of order", (1.0, 0.5))
