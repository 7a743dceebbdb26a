"""The WebHDFS client against the fake cluster over real HTTP: every operation, errors, auth, failover."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from kubeflume_agent.protocols.webhdfs import (
    AccessDenied,
    DataNodeUnreachable,
    FileAlreadyExists,
    FileNotFound,
    NoNameNodeAvailable,
    WebHDFSClient,
    WebHDFSError,
)
from tests.fakes.webhdfs import FakeWebHDFS

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def client(fs):
    async with WebHDFSClient(fs.url, user="alice") as webhdfs:
        yield webhdfs


async def test_create_then_read_back(fs, client):
    await client.create("/data/a.txt", b"hello", permission="640", replication=2, blocksize=1 << 20)
    assert fs.read("/data/a.txt") == b"hello"
    status = await client.get_file_status("/data/a.txt")
    assert (status.type, status.length, status.permission, status.owner) == ("FILE", 5, "640", "alice")
    assert (status.replication, status.block_size) == (2, 1 << 20)
    assert status.modification_time > 0
    assert await client.open("/data/a.txt") == b"hello"
    assert await client.open("/data/a.txt", offset=1, length=3) == b"ell"


async def test_create_streams_an_async_iterable(fs, client):
    async def chunks():
        for index in range(50):
            yield bytes([65 + index % 26]) * 1000

    await client.create("/big", chunks())
    data = fs.read("/big")
    assert len(data) == 50_000
    assert data[:1000] == b"A" * 1000 and data[-1000:] == bytes([65 + 49 % 26]) * 1000


async def test_create_refuses_existing_unless_overwrite(fs, client):
    await client.create("/f", b"one")
    with pytest.raises(FileAlreadyExists) as raised:
        await client.create("/f", b"two")
    error = raised.value
    assert (error.status, error.exception) == (403, "FileAlreadyExistsException")
    assert error.java_class == "org.apache.hadoop.fs.FileAlreadyExistsException"
    assert "/f" in error.message
    await client.create("/f", b"two", overwrite=True)
    assert fs.read("/f") == b"two"


async def test_append_and_truncate(fs, client):
    await client.create("/f", b"one")
    await client.append("/f", b"two")
    assert fs.read("/f") == b"onetwo"
    assert await client.truncate("/f", 3) is True
    assert fs.read("/f") == b"one"


async def test_append_to_missing_file_is_file_not_found(client):
    with pytest.raises(FileNotFound) as raised:
        await client.append("/missing", b"x")
    assert raised.value.status == 404


async def test_directories_listing_rename_delete(fs, client):
    assert await client.mkdirs("/d/sub", permission="700") is True
    await client.create("/d/x", b"1")
    listing = await client.list_status("/d")
    assert [(s.path_suffix, s.type) for s in listing] == [("sub", "DIRECTORY"), ("x", "FILE")]
    assert [s.path_suffix for s in await client.list_status("/d/x")] == [""]
    assert await client.rename("/d/x", "/d/y") is True
    assert await client.rename("/d/x", "/d/z") is False
    assert fs.read("/d/y") == b"1"
    with pytest.raises(WebHDFSError) as raised:
        await client.delete("/d")
    assert raised.value.exception == "PathIsNotEmptyDirectoryException"
    assert await client.delete("/d", recursive=True) is True
    assert await client.delete("/d") is False
    assert not fs.exists("/d")


async def test_open_of_a_missing_file_or_past_the_end_is_typed(fs, client):
    with pytest.raises(FileNotFound):
        await client.open("/missing")
    await client.create("/f", b"abc")
    with pytest.raises(WebHDFSError) as raised:
        await client.open("/f", offset=3)
    assert (raised.value.status, raised.value.exception) == (403, "IOException")


async def test_missing_file_status_is_typed(client):
    with pytest.raises(FileNotFound) as raised:
        await client.get_file_status("/nope")
    assert raised.value.java_class == "java.io.FileNotFoundException"


async def test_home_directory_of_the_user(client):
    assert await client.home_directory() == "/user/alice"


async def test_bad_permission_is_a_400_error(client):
    with pytest.raises(WebHDFSError) as raised:
        await client.mkdirs("/d", permission="999")
    assert (raised.value.status, raised.value.exception) == (400, "IllegalArgumentException")


async def test_without_user_a_strict_cluster_says_401(fs):
    async with WebHDFSClient(fs.url) as anonymous:
        with pytest.raises(AccessDenied) as raised:
            await anonymous.home_directory()
    assert raised.value.status == 401


async def test_access_control_exception(fs, client):
    await client.mkdirs("/mine", permission="755")
    async with WebHDFSClient(fs.url, user="mallory") as other:
        with pytest.raises(AccessDenied) as raised:
            await other.create("/mine/x", b"x")
    assert raised.value.exception == "AccessControlException"
    assert not fs.exists("/mine/x")


async def test_delegation_token_is_sent_instead_of_user_name():
    async with FakeWebHDFS(strict=True, tokens={"T0K": "svc"}) as fs:
        async with WebHDFSClient(fs.url, user="ignored", delegation_token="T0K") as client:
            assert await client.home_directory() == "/user/svc"
            await client.create("/t", b"x")
        assert fs.status("/t")["owner"] == "svc"
        async with WebHDFSClient(fs.url, delegation_token="expired") as client:
            with pytest.raises(AccessDenied) as raised:
                await client.home_directory()
        assert raised.value.exception == "InvalidToken"


async def test_proxy_user_is_sent_as_doas():
    async with FakeWebHDFS(strict=True, proxy_users={"flume"}) as fs:
        async with WebHDFSClient(fs.url, user="flume", proxy_user="etl") as client:
            assert await client.home_directory() == "/user/etl"
            await client.create("/as-etl", b"x")
        assert fs.status("/as-etl")["owner"] == "etl"
        async with WebHDFSClient(fs.url, user="nobody", proxy_user="etl") as client:
            with pytest.raises(AccessDenied) as raised:
                await client.home_directory()
        assert "not allowed to impersonate" in raised.value.message


async def test_a_namenode_slower_than_the_timeout_is_given_up(fs):
    async with WebHDFSClient(fs.url, user="alice", timeout=0.3) as client:
        fs.hang_on("GETFILESTATUS")
        with pytest.raises(NoNameNodeAvailable, match="Timeout"):
            await asyncio.wait_for(client.get_file_status("/"), 20)
        assert fs.hung.is_set()
        fs.release()
        assert (await client.get_file_status("/")).type == "DIRECTORY"


async def test_fails_over_from_a_standby_namenode():
    async with FakeWebHDFS(standby=True, namenodes=2) as fs, WebHDFSClient(fs.urls, user="alice") as client:
        await client.create("/ha", b"x")
        assert fs.read("/ha") == b"x"
        standby_answers = [r for r in fs.requests if r[0] == "namenode0"]
        assert len(standby_answers) == 1
        await client.get_file_status("/ha")
        assert len([r for r in fs.requests if r[0] == "namenode0"]) == 1, "sticks to the active NameNode"
        fs.set_active(0)
        await client.get_file_status("/ha")
        assert fs.requests[-1][0] == "namenode0"


async def test_fails_over_from_an_unreachable_namenode(fs):
    async with aiohttp.ClientSession() as session:
        dead = "http://127.0.0.1:1"
        async with WebHDFSClient([dead, fs.url], user="alice", session=session) as client:
            await client.mkdirs("/via-second")
    assert fs.exists("/via-second")


async def test_no_namenode_available_lists_every_failure():
    async with FakeWebHDFS(standby=True) as fs, WebHDFSClient([fs.url, "http://127.0.0.1:1"], user="a") as client:
        with pytest.raises(NoNameNodeAvailable) as raised:
            await client.list_status("/")
    message = raised.value.message
    assert "standby" in message and "127.0.0.1:1" in message


async def test_a_stopped_namenode_comes_back_on_the_same_port(fs, client):
    await client.create("/f", b"x")
    await fs.stop()
    with pytest.raises(NoNameNodeAvailable):
        await client.get_file_status("/f")
    await fs.start()
    assert (await client.get_file_status("/f")).length == 1


async def test_lost_datanode_answer_is_typed(fs, client):
    await client.create("/f", b"one")
    fs.crash_on("APPEND", "after_write")
    with pytest.raises(DataNodeUnreachable):
        await client.append("/f", b"two")


async def test_a_given_session_is_left_open(fs):
    async with aiohttp.ClientSession() as session:
        async with WebHDFSClient(fs.url, user="a", session=session) as client:
            await client.mkdirs("/x")
        assert not session.closed


def test_needs_a_namenode():
    with pytest.raises(ValueError, match="at least one NameNode"):
        WebHDFSClient(" , ")


def test_comma_separated_namenodes():
    client = WebHDFSClient("http://a:1/, http://b:2")
    assert client.namenodes == ["http://a:1", "http://b:2"]
