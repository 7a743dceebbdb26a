"""The file channel's checkpoint: the queue of record pointers as of a position in the data log.

    checkpoint := b"KFCKPT01" version:u32 file_id:u32 offset:u64 next_txid:u64 count:u64
                  pointer:i64 * count  crc:u32 (CRC-32 of everything before it)

Little-endian. Written to `checkpoint.tmp`, fsynced, renamed over `checkpoint`, and the directory
fsynced, so a crash leaves either the old or the new checkpoint, never half of one. With dual
checkpoints the same bytes are then written the same way to the backup directory.
"""

from __future__ import annotations

import os
import struct
import zlib
from array import array
from dataclasses import dataclass

from kubeflume_agent.channels.file.log import fsync_directory

MAGIC = b"KFCKPT01"
VERSION = 1
HEADER = struct.Struct("<8sIIQQQ")
CRC = struct.Struct("<I")
FILE_NAME = "checkpoint"


class BadCheckpoint(Exception):
    """A checkpoint that is missing, cut short or fails its checksum: replay cannot start from it."""


class MissingCheckpoint(BadCheckpoint):
    """No checkpoint written yet (a new channel, or one that never ran a checkpoint)."""


@dataclass
class Checkpoint:
    file_id: int  # the log position every record before which the pointers reflect
    offset: int
    next_txid: int
    pointers: array


def encode(checkpoint: Checkpoint) -> bytes:
    header = HEADER.pack(MAGIC, VERSION, checkpoint.file_id, checkpoint.offset, checkpoint.next_txid,
                         len(checkpoint.pointers))
    body = checkpoint.pointers.tobytes()
    return header + body + CRC.pack(zlib.crc32(body, zlib.crc32(header)))


def decode(data: bytes) -> Checkpoint:
    if len(data) < HEADER.size + CRC.size:
        raise BadCheckpoint(f"too short ({len(data)} bytes)")
    magic, version, file_id, offset, next_txid, count = HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise BadCheckpoint("not a kubeflume checkpoint (bad magic or version)")
    end = HEADER.size + 8 * count
    if len(data) != end + CRC.size:
        raise BadCheckpoint(f"size {len(data)} does not match its {count} pointers")
    if zlib.crc32(memoryview(data)[:end]) != CRC.unpack_from(data, end)[0]:
        raise BadCheckpoint("checksum mismatch")
    pointers = array("q")
    pointers.frombytes(memoryview(data)[HEADER.size:end])
    return Checkpoint(file_id, offset, next_txid, pointers)


def write(directory: str, data: bytes) -> None:
    """Atomically replace `directory`/checkpoint with `data` (see module docstring)."""
    temporary = os.path.join(directory, FILE_NAME + ".tmp")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, os.path.join(directory, FILE_NAME))
    fsync_directory(directory)


def read(directory: str) -> Checkpoint:
    path = os.path.join(directory, FILE_NAME)
    try:
        with open(path, "rb") as file:
            return decode(file.read())
    except FileNotFoundError:
        raise MissingCheckpoint(f"{path} does not exist") from None
    except BadCheckpoint as error:
        raise BadCheckpoint(f"{path}: {error}") from None
