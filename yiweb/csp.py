"""The Content-Security-Policy sent with every response.

Model output is untrusted text rendered in the chat page (static/chat/markdown.js
sanitises it). This header is the second wall: if the sanitiser ever let something
through, the browser would still run no inline script (no `<script>` body, no `onerror=`,
no `javascript:` URL), load nothing from another origin (no image, style, font, frame or
connection: the conversation cannot be sent out through a URL), let no page frame ours,
and post no form elsewhere. The app itself needs nothing more: its scripts and styles are
files under /static/, its data travels in `<script type="application/json">` blocks
(json_script, which is data, not script), and its socket is same-origin (`connect-src
'self'` covers ws:// and wss:// to the page's own host and port). The Django admin runs
under it unchanged: its templates have no inline script or style (Django 5.2).

The only exceptions are for Django's own error pages, on error responses only: the
`<style>` blocks of the CSRF failure page (which production shows too) and of the debug
404 and 500 pages, allowed by their SHA-256, so that those pages keep their layout. The
debug 500 page's inline script stays blocked: with it, its traceback folds its context
lines away behind `onclick` links the policy would refuse anyway; without it, everything
shows unfolded.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import django
from django.utils.deprecation import MiddlewareMixin

POLICY: dict[str, str] = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data: blob:",
    "connect-src": "'self'",
    "font-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}

_DJANGO_PAGES = ("csrf_403.html", "technical_404.html", "technical_500.html")


def policy_header(policy: dict[str, str]) -> str:
    return "; ".join(f"{directive} {sources}" for directive, sources in policy.items())


def django_page_style_hashes() -> list[str]:
    """CSP hash sources of the `<style>` blocks in Django's own error pages."""
    folder = Path(django.__file__).parent / "views" / "templates"
    hashes = []
    for name in _DJANGO_PAGES:
        try:
            template = (folder / name).read_text(encoding="utf-8")
        except OSError:
            continue  # another Django version: those pages show unstyled, nothing breaks
        for style in re.findall(r"<style>(.*?)</style>", template, re.DOTALL):
            digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
            hashes.append(f"'sha256-{digest}'")
    return hashes


HEADER = policy_header(POLICY)
ERROR_HEADER = policy_header(
    {**POLICY, "style-src": " ".join([POLICY["style-src"], *django_page_style_hashes()])}
)


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    """Adds the policy to every response that does not set its own."""

    def process_response(self, request, response):
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = ERROR_HEADER if response.status_code >= 400 else HEADER
        return response
