"""The development mailbox of `registrar run`: a real SMTP server (aiosmtpd) that keeps
each message as an .eml file, and a page listing them."""

from __future__ import annotations

import asyncio
import html
import time
import uuid
from email import policy
from email.parser import BytesParser
from pathlib import Path

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class MaildirHandler:
    """aiosmtpd handler: writes every accepted message to `folder/<time>-<id>.eml`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
        data = envelope.original_content or envelope.content or b""
        if isinstance(data, str):
            data = data.encode()
        (self.folder / name).write_bytes(data)
        return "250 Message accepted for delivery"


def start_mailbox(folder: Path, *, port: int) -> Controller:
    """Start the SMTP server on 127.0.0.1:`port` (in its own thread)."""
    controller = Controller(MaildirHandler(folder), hostname="127.0.0.1", port=port)
    controller.start()
    return controller


def _message_page(folder: Path, name: str) -> str | None:
    path = folder / Path(name).name  # .name: no path traversal out of the mailbox
    return path.read_text(errors="replace") if path.is_file() else None


def _index_page(folder: Path) -> str:
    rows = []
    for path in sorted(folder.glob("*.eml"), reverse=True):
        msg = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        cells = (msg["Date"] or path.name[:15], msg["To"], msg["Content-Language"], msg["Subject"])
        rows.append(
            "<tr>"
            + "".join(f"<td>{html.escape(str(c or ''))}</td>" for c in cells)
            + f'<td><a href="/_dev/mail/{html.escape(path.name)}">open</a></td></tr>'
        )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<title>registrar dev mailbox</title></head><body><h1>Development mailbox</h1>"
        f"<p>{len(rows)} message(s) in {html.escape(str(folder))}</p><table border='1'>"
        "<tr><th>time</th><th>to</th><th>locale</th><th>subject</th><th></th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )


def mailbox_page(folder: Path):
    """GET /_dev/mail (list) and GET /_dev/mail/{name} (one message as text)."""

    async def page(request: web.Request) -> web.Response:
        name = request.match_info.get("name")
        if name:
            text = await asyncio.to_thread(_message_page, folder, name)
            if text is None:
                raise web.HTTPNotFound()
            return web.Response(text=text, content_type="text/plain")
        text = await asyncio.to_thread(_index_page, folder)
        return web.Response(text=text, content_type="text/html")

    return page
