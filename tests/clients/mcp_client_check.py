"""Drives a gateway's MCP endpoint with the official MCP Python SDK (`mcp` from PyPI).

Usage: mcp_client_check.py URL KEY TOOL ARGUMENTS_JSON

Connects over Streamable HTTP with `Authorization: Bearer KEY`, initializes, lists the tools
(every page) and calls TOOL with ARGUMENTS_JSON. Prints one JSON object on stdout: the server's
protocol version and name, the tools' names and descriptions, and the call's result (content,
structuredContent, isError), or the error the call raised. Exit code 0 when the session worked
(even if the call was refused), 1 otherwise.
"""

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client


async def run(url: str, key: str, tool: str, arguments: dict) -> dict:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                tools = []
                cursor = None
                while True:
                    page = await session.list_tools(cursor=cursor) if cursor else await session.list_tools()
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        break
                out = {
                    "protocol_version": init.protocol_version,
                    "server": init.server_info.name,
                    "tools": [{"name": t.name, "description": t.description} for t in tools],
                }
                try:
                    result = await session.call_tool(tool, arguments)
                    out["result"] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
                except Exception as e:  # a JSON-RPC error answer
                    out["error"] = str(e)
                return out


def main() -> int:
    url, key, tool, arguments = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    try:
        out = asyncio.run(run(url, key, tool, arguments))
    except BaseException as e:  # noqa: BLE001 - report whatever broke the session
        print(json.dumps({"session_error": repr(e)}))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
