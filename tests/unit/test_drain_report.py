"""The drain report always fits a pod's termination message, totals first."""

from __future__ import annotations

import json

from kubeflume_agent.runtime.drain import MAX_REPORT_BYTES, DrainReport


def test_a_small_report_keeps_every_channel_and_sink():
    report = DrainReport("a1", drained=True, held={"c1": 5}, left={"c1": 0}, delivered={"k1": 5}, seconds=0.25)
    assert json.loads(report.to_json()) == {
        "agent": "a1", "drained": True, "held": 5, "delivered": 5, "left": 0, "seconds": 0.25, "reason": "",
        "channels": {"c1": {"held": 5, "left": 0}}, "sinks": {"k1": 5}}


def test_a_large_report_drops_the_detail_then_shortens_the_reason_but_keeps_the_totals():
    many = {f"channel-{n:04d}": 10 for n in range(300)}
    report = DrainReport("a1", held=many, left=many, delivered={"k1": 0}, reason="sink down: " + "x" * 10_000)
    line = report.to_json()
    assert len(line.encode()) <= MAX_REPORT_BYTES
    parsed = json.loads(line)
    assert (parsed["held"], parsed["left"], parsed["delivered"], parsed["drained"]) == (3000, 3000, 0, False)
    assert "channels" not in parsed
    assert parsed["reason"].startswith("sink down: xxx") and parsed["reason"].endswith("...")
