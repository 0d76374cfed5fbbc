"""The reference door for `door_ratio`: a minimal aiohttp app that reads the POST body and
answers 202, nothing else. Run as a process of its own by bench/run.py.

    .venv/bin/python bench/_door_stub.py PORT
"""

from __future__ import annotations

import sys

from aiohttp import web


async def register(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"status": "pending"}, status=202)


def main() -> None:
    app = web.Application()
    app.router.add_post("/{api_key}/register", register)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
