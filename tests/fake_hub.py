"""A Hugging Face Hub stand-in on localhost: the few endpoints huggingface_hub's snapshot_download and
hf_hub_download use (repo info, recursive tree, HEAD and ranged GET of a file), serving files from memory.

It can cut a download short once (``drop_after``) so resuming can be tested, and records every request.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Repo:
    files: dict[str, bytes]
    sha: str = field(default_factory=lambda: hashlib.sha1(b"closeup-fake").hexdigest())


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, Range header)
    drop_after: dict[str, int] = field(default_factory=dict)  # file path -> bytes sent before the connection drops
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_HEAD(self) -> None:
                hub.handle(self, head=True)

            def do_GET(self) -> None:
                hub.handle(self, head=False)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # ------------------------------------------------------------------ routes

    def handle(self, request: BaseHTTPRequestHandler, head: bool) -> None:
        path = request.path.split("?", 1)[0]
        self.requests.append((request.command, path, request.headers.get("Range", "")))
        info = re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/([^/]+)", path)
        tree = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path)
        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if info and info.group(1) in self.repos:
            repo = self.repos[info.group(1)]
            self._json(request, {"id": info.group(1), "sha": repo.sha, "private": False,
                                 "siblings": [{"rfilename": name, "size": len(data)}
                                              for name, data in repo.files.items()]})
        elif tree and tree.group(1) in self.repos:
            repo = self.repos[tree.group(1)]
            entries = [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                       for name, data in repo.files.items()]
            self._json(request, entries)
        elif resolve and resolve.group(1) in self.repos and resolve.group(3) in self.repos[resolve.group(1)].files:
            self._file(request, self.repos[resolve.group(1)], resolve.group(3), head)
        else:
            self._json(request, {"error": "Repository not found"}, 404, {"X-Error-Code": "RepoNotFound"})

    def _json(self, request: BaseHTTPRequestHandler, body: Any, status: int = 200,
              headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        request.send_response(status)
        for key, value in {"Content-Type": "application/json", **(headers or {})}.items():
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _file(self, request: BaseHTTPRequestHandler, repo: Repo, name: str, head: bool) -> None:
        data = repo.files[name]
        etag = f'"{hashlib.sha256(data).hexdigest()}"'
        start = 0
        ranged = re.fullmatch(r"bytes=(\d+)-", request.headers.get("Range", ""))
        if ranged and not head:
            start = int(ranged.group(1))
        body = data[start:]
        request.send_response(206 if start else 200)
        request.send_header("Content-Type", "application/octet-stream")
        request.send_header("ETag", etag)
        request.send_header("X-Repo-Commit", repo.sha)
        request.send_header("Accept-Ranges", "bytes")
        if start:
            request.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if head:
            return
        cut = self.drop_after.pop(name, None)
        if cut is not None and cut < len(body):
            request.wfile.write(body[:cut])
            request.wfile.flush()
            request.close_connection = True
            request.connection.shutdown(2)  # the connection drops mid-file
            return
        request.wfile.write(body)
