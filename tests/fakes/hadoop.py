"""A fake Hadoop cluster (WebHDFS + ResourceManager) with the ApplicationMaster jar in place, for ShellJobs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from kubeflume_operator.shelljob.submission import staging_directory
from tests.fakes.resourcemanager import FakeResourceManager
from tests.fakes.webhdfs import FakeWebHDFS

USER = "alice"
HOME = f"/user/{USER}"
AM_JAR_PATH = "/apps/distributedshell/AppMaster.jar"
HDFS_TOKEN = "HAAFYWxpY2UAAAAA-hdfs"
YARN_TOKEN = "MgAFYWxpY2UAAAAA-yarn"


@dataclass
class Hadoop:
    hdfs: FakeWebHDFS
    rm: FakeResourceManager

    def cluster(self) -> dict[str, Any]:
        """spec.yarn for this cluster."""
        return {"resourceManagers": [self.rm.url], "webhdfs": [self.hdfs.url], "user": USER,
                "defaultFS": f"hdfs://{self.hdfs.namenode_address}"}

    def staging(self, application_id: str, app_name: str) -> str:
        return staging_directory(HOME, app_name, application_id)

    def kills(self) -> list[str]:
        return [path for method, path in self.rm.requests if method == "PUT"]


@contextlib.asynccontextmanager
async def fake_hadoop() -> AsyncIterator[Hadoop]:
    """A fake HDFS and ResourceManager, with the ApplicationMaster jar in place."""
    async with FakeWebHDFS(strict=True, tokens={HDFS_TOKEN: USER}) as hdfs, \
            FakeResourceManager(hdfs, tokens={YARN_TOKEN: USER}) as rm:
        hdfs.write(AM_JAR_PATH, b"PK-not-really-the-distributedshell-jar", owner="yarn")
        yield Hadoop(hdfs, rm)


def job_spec(hadoop: Hadoop, kind: str = "dshell", **fields: Any) -> dict[str, Any]:
    """A ShellJob spec running on `hadoop` with the ApplicationMaster jar of `kind`."""
    return {"yarn": hadoop.cluster(), "applicationMaster": {"kind": kind, "jar": {"url": f"hdfs://{AM_JAR_PATH}"}},
            **fields}
