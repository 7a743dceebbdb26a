"""Thrift message decoding for the thrift, scribe and legacy sources: the read budget that bounds
what one message can make us build, in both protocols, and messages cut short."""

from __future__ import annotations

import pytest

from kubeflume_agent.protocols.framing import DecodeBudgetExceeded, decode_budget
from kubeflume_agent.protocols.thrift_rpc import FLUME, INCOMPLETE, PROTOCOLS, read_call, text
from tests.integration.thrift_frames import batch_of_empty_events


@pytest.mark.parametrize("protocol", ["compact", "binary"])
def test_a_message_within_its_budget_decodes(protocol):
    data = batch_of_empty_events(protocol, 100)
    call, used = read_call(data, PROTOCOLS[protocol], FLUME.ThriftSourceProtocol, decode_budget(100))
    assert (call.name, len(call.args.events), used) == ("appendBatch", 100, len(data))


@pytest.mark.parametrize("protocol", ["compact", "binary"])
def test_a_message_beyond_its_budget_is_refused(protocol):
    data = batch_of_empty_events(protocol, 100_000)
    with pytest.raises(DecodeBudgetExceeded, match="raise max-batch-events"):
        read_call(data, PROTOCOLS[protocol], FLUME.ThriftSourceProtocol, decode_budget(100))


@pytest.mark.parametrize("protocol", ["compact", "binary"])
def test_a_message_cut_short_asks_for_more(protocol):
    data = batch_of_empty_events(protocol, 10)
    with pytest.raises(INCOMPLETE):
        read_call(data[:-3], PROTOCOLS[protocol], FLUME.ThriftSourceProtocol)


def test_text_replaces_what_is_not_utf8():
    assert text(b"caf\xc3\xa9 \xff") == "caf\u00e9 \ufffd"
    assert text("already text") == "already text"
