"""A fake of the Hugging Face Hub for tests: what huggingface_hub's `model_info` and `hf_hub_download` ask of it.

It listens on 127.0.0.1 at an ephemeral port in a thread of its own (the client is synchronous), so a test
points the real client at it with `HF_ENDPOINT=hub.endpoint` (or `endpoint=`). It answers:

- `GET /api/models/{owner}/{name}[/revision/{rev}]`: the repo's id, commit and files with their sizes;
- `HEAD` and `GET /{owner}/{name}/resolve/{rev}/{file}`: the file, with the headers the client checks
  (`X-Repo-Commit`, `ETag`/`X-Linked-Etag` — the sha256, as for an LFS file —, `X-Linked-Size`, `Content-Length`,
  `Accept-Ranges`) and `Range: bytes=N-` answered with 206;
- 404 with `X-Error-Code: RepoNotFound` for an unknown repo, `EntryNotFound` for an unknown file;
- 401 (no token) or 403 (another token) with `X-Error-Code: GatedRepo` for the files of a gated repo.

`drop_after_bytes` and `drops` make the next downloads break the connection after that many bytes of the file
(the client then resumes with a Range request, or gives up). Every request is recorded in `requests`.

    with FakeHub({"kortana-test/SmolLM2-GGUF": HubRepo({"SmolLM2-Q4_1.gguf": bundled_path})}) as hub:
        path = hf_hub_download("kortana-test/SmolLM2-GGUF", "SmolLM2-Q4_1.gguf", endpoint=hub.endpoint, ...)
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

CHUNK = 1 << 20
TOKEN = "hf_fake_token_for_tests"


@dataclass
class HubRepo:
    """Files by path in the repo: bytes, or a file on disk served as is. `listed_sizes` overrides the size the
    listing reports (a file said to be huge, without serving that much)."""

    files: dict[str, bytes | Path]
    gated: bool = False
    listed_sizes: dict[str, int] = field(default_factory=dict)
    commit: str = "0123456789abcdef0123456789abcdef01234567"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    range: str | None
    authorization: bool


class FakeHub:
    def __init__(self, repos: dict[str, HubRepo], token: str = TOKEN) -> None:
        self.repos = repos
        self.token = token
        self.requests: list[Recorded] = []
        self.drop_after_bytes: int | None = None
        self.drops = 0  # how many downloads still break after `drop_after_bytes`
        self.endpoint = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FakeHub:
        started = threading.Event()
        self._loop = asyncio.new_event_loop()

        def serve() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._start())
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="fake-hub", daemon=True)
        self._thread.start()
        started.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving: later connections are refused, as when the network is gone."""
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)  # type: ignore[union-attr]
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    def downloads_of(self, file: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == "GET" and r.path.endswith(f"/{file}")]

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get(r"/api/models/{owner}/{name}", self._model_info)
        app.router.add_get(r"/api/models/{owner}/{name}/revision/{revision}", self._model_info)
        app.router.add_route("*", r"/{owner}/{name}/resolve/{revision}/{file:.+}", self._resolve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.endpoint = f"http://127.0.0.1:{port}"

    def _record(self, request: web.Request) -> None:
        self.requests.append(
            Recorded(request.method, request.path, request.headers.get("Range"), "Authorization" in request.headers)
        )

    async def _model_info(self, request: web.Request) -> web.Response:
        self._record(request)
        repo_id = f"{request.match_info['owner']}/{request.match_info['name']}"
        repo = self.repos.get(repo_id)
        if repo is None:
            return _error(404, "RepoNotFound", "Repository not found")
        siblings = [
            {"rfilename": name, "size": repo.listed_sizes.get(name, _size(content))}
            for name, content in repo.files.items()
        ]
        return web.json_response(
            {
                "id": repo_id,
                "modelId": repo_id,
                "sha": repo.commit,
                "private": False,
                "gated": "manual" if repo.gated else False,
                "siblings": siblings,
            }
        )

    async def _resolve(self, request: web.Request) -> web.StreamResponse:
        self._record(request)
        repo_id = f"{request.match_info['owner']}/{request.match_info['name']}"
        repo = self.repos.get(repo_id)
        if repo is None:
            return _error(404, "RepoNotFound", "Repository not found")
        if repo.gated:
            authorization = request.headers.get("Authorization")
            if authorization is None:
                return _error(401, "GatedRepo", f"Access to model {repo_id} is restricted. You must be authenticated.")
            if authorization != f"Bearer {self.token}":
                return _error(403, "GatedRepo", f"Access to model {repo_id} is restricted and you are not in the list.")
        content = repo.files.get(request.match_info["file"])
        if content is None:
            return _error(404, "EntryNotFound", "Entry not found", commit=repo.commit)
        data = _bytes(content)
        headers = {
            "X-Repo-Commit": repo.commit,
            "ETag": f'"{_sha256(content)}"',
            "X-Linked-Etag": f'"{_sha256(content)}"',
            "X-Linked-Size": str(len(data)),
            "Accept-Ranges": "bytes",
        }
        if request.method == "HEAD":
            return web.Response(status=200, headers={**headers, "Content-Length": str(len(data))})
        start = _range_start(request.headers.get("Range"))
        status = 206 if start else 200
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = len(data) - start
        await response.prepare(request)
        drop_at = None
        if self.drops > 0 and self.drop_after_bytes is not None:
            self.drops -= 1
            drop_at = start + self.drop_after_bytes
        position = start
        while position < len(data):
            end = min(position + CHUNK, len(data), drop_at if drop_at is not None else len(data))
            await response.write(data[position:end])
            position = end
            if drop_at is not None and position >= drop_at:
                assert request.transport is not None
                request.transport.close()  # the connection breaks mid-file
                return response
        await response.write_eof()
        return response


def _error(status: int, code: str, message: str, commit: str | None = None) -> web.Response:
    headers = {"X-Error-Code": code, "X-Error-Message": message}
    if commit:
        headers["X-Repo-Commit"] = commit
    return web.json_response({"error": message}, status=status, headers=headers)


def _range_start(header: str | None) -> int:
    if not header or not header.startswith("bytes="):
        return 0
    first = header.removeprefix("bytes=").split("-", 1)[0]
    return int(first) if first else 0


def _size(content: bytes | Path) -> int:
    return len(content) if isinstance(content, bytes) else content.stat().st_size


@functools.cache
def _file_bytes(path: Path) -> bytes:
    return path.read_bytes()


def _bytes(content: bytes | Path) -> bytes:
    return content if isinstance(content, bytes) else _file_bytes(content)


@functools.cache
def _sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256(content: bytes | Path) -> str:
    return _sha256_of(_bytes(content))
