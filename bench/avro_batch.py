"""Avro appendBatch (100 events per call) -> memory channel -> file_roll, through the agent CLI.

    python3 bench/avro_batch.py --events 500000 --connections 4

Flume SDK-style clients in a separate process, one call in flight per connection (see
rpc_batch.py); every event's seq number is checked to arrive exactly once, and the load
process's CPU is reported apart. Its twin for Thrift is thrift_batch.py.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_harness import varied_body
from rpc_batch import main


def encode_calls(calls: list[list[int]], size: int) -> list[bytes]:
    from kubeflume_agent.protocols.avro_rpc import AvroProtocol, Requestor, netty_frame

    requestor = Requestor(AvroProtocol.packaged("AvroSourceProtocol"))
    encoded = []
    for serial, seqs in enumerate(calls, 1):
        batch = [{"headers": {"host": "benchhost", "seq": str(seq)}, "body": varied_body(seq, size)} for seq in seqs]
        encoded.append(netty_frame(serial, requestor.request("appendBatch", {"events": batch})))
        requestor.connected = True  # only the first call of a connection carries the handshake
    return encoded


async def client(port: int, encoded: list[bytes]) -> None:
    from kubeflume_agent.protocols.avro_rpc import read_netty_frame

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for frame in encoded:
        writer.write(frame)
        _, payload = await read_netty_frame(reader, 1 << 20)
        if not payload.endswith(b"\x00\x00\x00"):
            raise SystemExit(f"a batch was not answered OK: {payload!r}")
    writer.close()


if __name__ == "__main__":
    main(__doc__, "Avro appendBatch", "avro", __file__, encode_calls, client)
