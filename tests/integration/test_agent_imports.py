"""What an agent imports is what it pays for in memory: aiohttp (some 14 MB) only when a component
that speaks HTTP as a client is configured (HTTP sink, WebHDFS, the kubernetes interceptor)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(120)

AGENT_RUN = textwrap.dedent("""
    import asyncio, json, sys, urllib.request
    from kubeflume_agent.config.properties import parse_properties
    from kubeflume_agent.runtime.agent import Agent

    CONF = '''
    a1.sources = r1
    a1.channels = c1
    a1.sinks = k1
    a1.sources.r1.type = http
    a1.sources.r1.bind = 127.0.0.1
    a1.sources.r1.port = 0
    a1.sources.r1.channels = c1
    a1.channels.c1.type = memory
    a1.sinks.k1.type = file_roll
    a1.sinks.k1.sink.directory = {out}
    a1.sinks.k1.channel = c1
    '''

    def status_of(request):
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status

    def post(port):
        return status_of(urllib.request.Request(f"http://127.0.0.1:{{port}}/", data=b'[{{"body": "x"}}]',
                                                headers={{"Content-Type": "application/json"}}))

    async def main():
        agent = Agent(parse_properties(CONF, "a1"), metrics_host="127.0.0.1", metrics_port=0)
        await agent.start()
        try:
            port = agent.sources["r1"].bound_ports[0]
            statuses = [await asyncio.to_thread(post, port),
                        await asyncio.to_thread(status_of, f"http://127.0.0.1:{{agent.metrics_server.port}}/metrics")]
        finally:
            await agent.stop()
        loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("aiohttp", "multidict", "yarl"))
        print(json.dumps({{"statuses": statuses, "loaded": loaded}}))

    asyncio.run(main())
""")


def test_an_http_source_to_file_roll_agent_with_metrics_does_not_import_aiohttp(tmp_path):
    done = subprocess.run([sys.executable, "-c", AGENT_RUN.format(out=tmp_path)], capture_output=True, text=True,
                          timeout=100)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["statuses"] == [200, 200]
    assert report["loaded"] == []
