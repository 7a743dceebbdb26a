"""The WebHDFS fake answers as WebHDFS.md says, checked with raw HTTP (aiohttp without redirects, curl)."""

from __future__ import annotations

import asyncio
import shutil

import aiohttp
import pytest

from tests.fakes.webhdfs import FakeWebHDFS

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


def url(fs: FakeWebHDFS, path: str) -> str:
    return f"{fs.url}/webhdfs/v1{path}"


async def remote_exception(response: aiohttp.ClientResponse) -> dict:
    body = await response.json()
    assert set(body) == {"RemoteException"}
    assert set(body["RemoteException"]) == {"exception", "javaClassName", "message"}
    return body["RemoteException"]


async def create(http, fs, path: str, data: bytes, **params) -> aiohttp.ClientResponse:
    query = {"op": "CREATE", "user.name": "alice", **params}
    async with http.put(url(fs, path), params=query, allow_redirects=False) as step1:
        assert step1.status == 307
        location = step1.headers["Location"]
    async with http.put(location, data=data) as step2:
        await step2.read()
        return step2


async def test_create_redirects_to_a_separate_datanode_port_then_answers_201(fs, http):
    async with http.put(url(fs, "/d/f.txt"), params={"op": "CREATE", "user.name": "alice"},
                        allow_redirects=False) as step1:
        assert step1.status == 307
        location = step1.headers["Location"]
        assert await step1.read() == b""
    assert location.startswith("http://127.0.0.1:")
    assert not location.startswith(fs.url + "/"), "the DataNode listens on its own port"
    assert not fs.exists("/d/f.txt"), "step one writes nothing"
    async with http.put(location, data=b"hello") as step2:
        assert step2.status == 201
        assert step2.headers["Location"] == f"webhdfs://{fs.namenode_address}/d/f.txt"
        assert step2.headers["Content-Length"] == "0"
    assert fs.read("/d/f.txt") == b"hello"
    assert fs.status("/d/f.txt")["owner"] == "alice"
    assert fs.status("/d/f.txt")["permission"] == "644"
    assert fs.status("/d")["permission"] == "755"


async def test_noredirect_answers_200_with_the_location_in_json(fs, http):
    params = {"op": "CREATE", "user.name": "alice", "noredirect": "true"}
    async with http.put(url(fs, "/f"), params=params, allow_redirects=False) as response:
        assert response.status == 200
        location = (await response.json())["Location"]
    assert "noredirect" not in location
    async with http.put(location, data=b"x") as step2:
        assert step2.status == 201


async def test_create_honours_permission_replication_blocksize(fs, http):
    await create(http, fs, "/f", b"x", permission="600", replication="2", blocksize="1048576")
    status = fs.status("/f")
    assert (status["permission"], status["replication"], status["blockSize"]) == ("600", 2, 1048576)


async def test_overwrite_defaults_to_false_and_existing_file_is_refused_with_403(fs, http):
    await create(http, fs, "/f", b"one")
    refused = await create(http, fs, "/f", b"two")
    assert refused.status == 403
    assert fs.read("/f") == b"one"
    replaced = await create(http, fs, "/f", b"two", overwrite="true")
    assert replaced.status == 201
    assert fs.read("/f") == b"two"


async def test_file_already_exists_body(fs, http):
    await create(http, fs, "/f", b"one")
    async with http.put(url(fs, "/f"), params={"op": "CREATE", "user.name": "a"}, allow_redirects=False) as step1:
        location = step1.headers["Location"]
    async with http.put(location, data=b"x") as response:
        error = await remote_exception(response)
    assert error["exception"] == "FileAlreadyExistsException"
    assert error["javaClassName"] == "org.apache.hadoop.fs.FileAlreadyExistsException"


async def test_append_is_post_with_a_redirect_and_200(fs, http):
    await create(http, fs, "/f", b"one")
    before = fs.status("/f")["modificationTime"]
    async with http.post(url(fs, "/f"), params={"op": "APPEND", "user.name": "alice"},
                         allow_redirects=False) as step1:
        assert step1.status == 307
        location = step1.headers["Location"]
    async with http.post(location, data=b"+two") as step2:
        assert step2.status == 200
    assert fs.read("/f") == b"one+two"
    assert fs.status("/f")["modificationTime"] > before


async def test_modification_time_changes_on_every_overwrite(fs, http):
    times = []
    for data in (b"a", b"b", b"c"):
        await create(http, fs, "/f", data, overwrite="true")
        async with http.get(url(fs, "/f"), params={"op": "GETFILESTATUS", "user.name": "a"}) as response:
            times.append((await response.json())["FileStatus"]["modificationTime"])
    assert times[0] < times[1] < times[2]


async def test_getfilestatus_shape(fs, http):
    await create(http, fs, "/f", b"12345")
    async with http.get(url(fs, "/f"), params={"op": "GETFILESTATUS", "user.name": "a"}) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        status = (await response.json())["FileStatus"]
    assert status["length"] == 5
    assert status["pathSuffix"] == ""
    assert status["type"] == "FILE"
    assert {"accessTime", "blockSize", "group", "modificationTime", "owner", "permission", "replication"} <= set(status)


async def test_liststatus_of_a_directory_and_of_a_file(fs, http):
    await create(http, fs, "/d/b", b"2")
    await create(http, fs, "/d/a", b"1")
    async with http.put(url(fs, "/d/sub"), params={"op": "MKDIRS", "user.name": "alice"}) as response:
        assert await response.json() == {"boolean": True}
    async with http.get(url(fs, "/d"), params={"op": "LISTSTATUS", "user.name": "a"}) as response:
        listing = (await response.json())["FileStatuses"]["FileStatus"]
    assert [(s["pathSuffix"], s["type"]) for s in listing] == [("a", "FILE"), ("b", "FILE"), ("sub", "DIRECTORY")]
    async with http.get(url(fs, "/d/a"), params={"op": "LISTSTATUS", "user.name": "a"}) as response:
        [single] = (await response.json())["FileStatuses"]["FileStatus"]
    assert single["pathSuffix"] == ""
    assert single["length"] == 1


async def test_gethomedirectory(fs, http):
    async with http.get(url(fs, "/"), params={"op": "GETHOMEDIRECTORY", "user.name": "bob"}) as response:
        assert await response.json() == {"Path": "/user/bob"}


async def test_open_redirects_and_serves_ranges(fs, http):
    await create(http, fs, "/f", b"0123456789")
    async with http.get(url(fs, "/f"), params={"op": "OPEN", "user.name": "a", "offset": "2", "length": "3"},
                        allow_redirects=False) as step1:
        assert step1.status == 307
        location = step1.headers["Location"]
    async with http.get(location) as step2:
        assert step2.content_type == "application/octet-stream"
        assert await step2.read() == b"234"


async def test_rename_and_delete_answer_booleans(fs, http):
    await create(http, fs, "/f", b"x")
    params = {"op": "RENAME", "user.name": "alice", "destination": "/g"}
    async with http.put(url(fs, "/f"), params=params) as response:
        assert await response.json() == {"boolean": True}
    async with http.put(url(fs, "/f"), params=params) as response:
        assert await response.json() == {"boolean": False}
    async with http.delete(url(fs, "/g"), params={"op": "DELETE", "user.name": "alice"}) as response:
        assert await response.json() == {"boolean": True}
    async with http.delete(url(fs, "/g"), params={"op": "DELETE", "user.name": "alice"}) as response:
        assert await response.json() == {"boolean": False}
    assert not fs.exists("/g")


async def test_delete_of_a_non_empty_directory_needs_recursive(fs, http):
    await create(http, fs, "/d/f", b"x")
    async with http.delete(url(fs, "/d"), params={"op": "DELETE", "user.name": "alice"}) as response:
        assert response.status == 403
        assert (await remote_exception(response))["exception"] == "PathIsNotEmptyDirectoryException"
    assert fs.exists("/d/f")
    params = {"op": "DELETE", "user.name": "alice", "recursive": "true"}
    async with http.delete(url(fs, "/d"), params=params) as response:
        assert await response.json() == {"boolean": True}
    assert not fs.exists("/d") and not fs.exists("/d/f")


async def test_missing_path_is_404_file_not_found(fs, http):
    async with http.get(url(fs, "/nope"), params={"op": "GETFILESTATUS", "user.name": "a"}) as response:
        assert response.status == 404
        error = await remote_exception(response)
    assert error["exception"] == "FileNotFoundException"
    assert error["javaClassName"] == "java.io.FileNotFoundException"
    assert "/nope" in error["message"]


@pytest.mark.parametrize("permission", ["999", "8", "abc", "12345"])
async def test_bad_permission_is_400(fs, http, permission):
    params = {"op": "MKDIRS", "user.name": "a", "permission": permission}
    async with http.put(url(fs, "/d"), params=params) as response:
        assert response.status == 400
        assert (await remote_exception(response))["exception"] == "IllegalArgumentException"
    assert not fs.exists("/d")


async def test_strict_mode_wants_user_name(fs, http):
    async with http.get(url(fs, "/"), params={"op": "LISTSTATUS"}) as response:
        assert response.status == 401
        assert (await remote_exception(response))["exception"] == "SecurityException"


async def test_lenient_mode_acts_as_dr_who(http):
    async with FakeWebHDFS() as fs, http.get(url(fs, "/"), params={"op": "GETHOMEDIRECTORY"}) as response:
        assert await response.json() == {"Path": "/user/dr.who"}


async def test_delegation_tokens(http):
    async with FakeWebHDFS(strict=True, tokens={"tok123": "carol"}) as fs:
        async with http.get(url(fs, "/"), params={"op": "GETHOMEDIRECTORY", "delegation": "tok123"}) as response:
            assert await response.json() == {"Path": "/user/carol"}
        async with http.get(url(fs, "/"), params={"op": "GETHOMEDIRECTORY", "delegation": "bad"}) as response:
            assert response.status == 403
            assert (await remote_exception(response))["exception"] == "InvalidToken"


async def test_write_permission_is_checked(fs, http):
    async with http.put(url(fs, "/private"), params={"op": "MKDIRS", "user.name": "alice", "permission": "755"}):
        pass
    async with http.put(url(fs, "/private/x"), params={"op": "MKDIRS", "user.name": "bob"}) as response:
        assert response.status == 403
        error = await remote_exception(response)
    assert error["exception"] == "AccessControlException"
    assert "user=bob" in error["message"]


async def test_standby_namenode_answers_403_standby_exception(http):
    async with FakeWebHDFS(standby=True, namenodes=2) as fs:
        async with http.get(f"{fs.urls[0]}/webhdfs/v1/", params={"op": "LISTSTATUS"}) as response:
            assert response.status == 403
            error = await remote_exception(response)
        assert error["exception"] == "StandbyException"
        assert error["javaClassName"] == "org.apache.hadoop.ipc.StandbyException"
        async with http.get(f"{fs.urls[1]}/webhdfs/v1/", params={"op": "LISTSTATUS"}) as response:
            assert response.status == 200


async def test_stop_and_start_keep_the_port(fs, http):
    before = fs.url
    await fs.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.get(url(fs, "/"), params={"op": "LISTSTATUS", "user.name": "a"}):
            pass
    await fs.start()
    assert fs.url == before
    async with http.get(url(fs, "/"), params={"op": "LISTSTATUS", "user.name": "a"}) as response:
        assert response.status == 200


async def test_scripted_crash_after_write_keeps_the_bytes_but_drops_the_answer(fs, http):
    await create(http, fs, "/f", b"one")
    fs.crash_on("APPEND", "after_write")
    async with http.post(url(fs, "/f"), params={"op": "APPEND", "user.name": "alice"},
                         allow_redirects=False) as step1:
        location = step1.headers["Location"]
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.post(location, data=b"two") as response:
            await response.read()
    await asyncio.wait_for(fs.crashed.wait(), 30)
    assert fs.read("/f") == b"onetwo"
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.get(url(fs, "/f"), params={"op": "GETFILESTATUS", "user.name": "a"}):
            pass


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_follows_the_create_redirect(fs, tmp_path):
    payload = tmp_path / "payload"
    payload.write_bytes(b"from curl")
    process = await asyncio.create_subprocess_exec(
        "curl", "-sS", "-L", "-X", "PUT", "-T", str(payload), "-o", "/dev/null", "-w", "%{http_code}",
        url(fs, "/curl.txt") + "?op=CREATE&user.name=alice",
        stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    assert out == b"201"
    assert fs.read("/curl.txt") == b"from curl"


@pytest.mark.parametrize(("method", "op"), [("POST", "APPEND"), ("GET", "OPEN")])
async def test_append_and_open_of_a_missing_file_are_refused_by_the_namenode(fs, http, method, op):
    async with http.request(method, url(fs, "/nope"), params={"op": op, "user.name": "a"},
                            allow_redirects=False) as response:
        assert response.status == 404
        error = await remote_exception(response)
    assert error["message"] == "File /nope not found."
    assert not [request for request in fs.requests if request[0] == "datanode"]


async def test_open_past_the_end_is_refused(fs, http):
    await create(http, fs, "/f", b"0123")
    async with http.get(url(fs, "/f"), params={"op": "OPEN", "user.name": "a", "offset": "4"},
                        allow_redirects=False) as response:
        assert response.status == 403
        assert (await remote_exception(response))["exception"] == "IOException"


async def test_doas_acts_as_the_named_user_for_a_proxy_user(http):
    async with FakeWebHDFS(strict=True, proxy_users={"flume"}) as fs:
        params = {"op": "GETHOMEDIRECTORY", "user.name": "flume", "doas": "etl"}
        async with http.get(url(fs, "/"), params=params) as response:
            assert await response.json() == {"Path": "/user/etl"}
        params["user.name"] = "mallory"
        async with http.get(url(fs, "/"), params=params) as response:
            assert response.status == 403
            error = await remote_exception(response)
        assert error["exception"] == "AuthorizationException"
        assert "mallory is not allowed to impersonate etl" in error["message"]


async def test_a_hung_request_is_carried_out_after_release(fs, http):
    fs.hang_on("MKDIRS")
    request = asyncio.ensure_future(http.put(url(fs, "/slow"), params={"op": "MKDIRS", "user.name": "a"}))
    await asyncio.wait_for(fs.hung.wait(), 30)
    assert not fs.exists("/slow") and not request.done()
    fs.release()
    async with await request as response:
        assert await response.json() == {"boolean": True}
    assert fs.exists("/slow")
