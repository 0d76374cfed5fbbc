"""Security headers of every HTML page the gateway serves (the invitation pages, the
development mailbox): nothing loads but the page's own stylesheet, no framing, no sniffing,
no referrer, no caching of pages that carry tokens."""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

from aiohttp import web


def _inline_style_hash() -> str:
    """The CSP source of the one inline <style> of templates/page.html (static text)."""
    page = (resources.files("service.gateway") / "templates" / "page.html").read_text("utf-8")
    match = re.search(r"<style>(.*?)</style>", page, re.DOTALL)
    style = match.group(1) if match else ""
    digest = hashlib.sha256(style.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src {_inline_style_hash()}; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HTML_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",  # for browsers that predate frame-ancestors
}


def secure_html(response: web.StreamResponse) -> None:
    """Add the headers to an HTML response (others are left as they are)."""
    if response.content_type == "text/html":
        response.headers.update(HTML_HEADERS)
