"""Thrift appendBatch (100 events per call, compact protocol, framed) -> memory channel ->
file_roll, through the agent CLI: the twin of avro_batch.py.

    python3 bench/thrift_batch.py --events 500000 --connections 4

Flume SDK-style clients in a separate process, one call in flight per connection (see
rpc_batch.py); every event's seq number is checked to arrive exactly once, and the load
process's CPU is reported apart.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_harness import varied_body
from rpc_batch import main


def encode_calls(calls: list[list[int]], size: int) -> list[bytes]:
    from kubeflume_agent.protocols.framing import length_prefixed
    from kubeflume_agent.protocols.thrift_rpc import FLUME, PROTOCOLS, write_call

    return [length_prefixed(write_call(
        PROTOCOLS["compact"], FLUME.ThriftSourceProtocol, "appendBatch", serial,
        events=[FLUME.ThriftFlumeEvent(headers={"host": "benchhost", "seq": str(seq)}, body=varied_body(seq, size))
                for seq in seqs]))
        for serial, seqs in enumerate(calls, 1)]


async def client(port: int, encoded: list[bytes]) -> None:
    from kubeflume_agent.protocols.framing import read_length_prefixed
    from kubeflume_agent.protocols.thrift_rpc import FLUME, PROTOCOLS, read_reply

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for frame in encoded:
        writer.write(frame)
        reply = await read_length_prefixed(reader, 1 << 20)
        status = read_reply(reply, PROTOCOLS["compact"], FLUME.ThriftSourceProtocol, "appendBatch")
        if status != FLUME.Status.OK:
            raise SystemExit(f"a batch was not answered OK: {status!r}")
    writer.close()


if __name__ == "__main__":
    main(__doc__, "Thrift appendBatch", "thrift", __file__, encode_calls, client)
