"""push_to_hub against a stand-in for the Hub's HTTP API on 127.0.0.1.

The stand-in implements, in memory, the endpoints huggingface_hub calls for a push:
repo creation, refs, branches, tags, tree listing, README validation, preupload, the
LFS batch API with basic-transfer uploads, and the NDJSON commit. Failures are injected
per request, so retries and resumes go through huggingface_hub's real HTTP code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import shutil
import threading
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import polars as pl
import pytest
import yaml

from curate.publish import HubPushError, PublishConfig, publish_run, push_to_hub

FIXTURE_RUN = Path(__file__).parent / "fixtures" / "publish" / "run"
TOKEN = "hf_StandInTokenForTests0123456789abcdefXYZ"
REPO = "acme/math500-distill"


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubStandIn:
    """In-memory Hub: repos with commits, branches and tags, and an LFS object store."""

    def __init__(self):
        self.repos: dict[str, dict] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.authorizations: list[str | None] = []
        self.puts = Counter()  # LFS uploads per object id, failed ones included
        self.commit_posts = 0
        # (method, path regex) -> statuses to answer, once each, before serving normally.
        self.failures: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def fail(self, method: str, path_pattern: str, *statuses: int) -> None:
        self.failures[(method, path_pattern)].extend(statuses)

    def files(self, repo_id: str, revision: str) -> dict[str, bytes]:
        repo = self.repos[repo_id]
        oid = repo["branches"].get(revision) or repo["tags"].get(revision) or revision
        return repo["commits"][oid]["files"]

    # -- request handling ---------------------------------------------------------------

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                hub._serve(self, "GET")

            def do_POST(self):
                hub._serve(self, "POST")

            def do_PUT(self):
                hub._serve(self, "PUT")

        return Handler

    def _serve(self, request: BaseHTTPRequestHandler, method: str) -> None:
        body = _read_body(request)
        path = unquote(urlsplit(request.path).path)
        with self.lock:
            self.requests.append((method, path))
            self.authorizations.append((method, request.headers.get("authorization")))
            status, payload, headers = self._route(request, method, path, body)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        request.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _route(self, request, method: str, path: str, body: bytes):
        for (fail_method, pattern), statuses in self.failures.items():
            if fail_method == method and re.fullmatch(pattern, path) and statuses:
                if method == "PUT":
                    self.puts[path.rsplit("/", 1)[-1]] += 1
                if path.endswith("/commit/main"):
                    self.commit_posts += 1
                return statuses.pop(0), {"error": "injected failure"}, {}
        # Uploads go to storage URLs handed out by the batch API (pre-signed on the Hub): no token.
        if not path.startswith("/lfs/") and request.headers.get("authorization") != f"Bearer {TOKEN}":
            return 401, {"error": "Invalid credentials"}, {}
        if method == "POST" and path == "/api/repos/create":
            return self._create_repo(json.loads(body))
        if method == "POST" and path == "/api/validate-yaml":
            content = json.loads(body)["content"]
            yaml.safe_load(content.split("---\n")[1])  # raises on a broken card header
            return 200, {"errors": [], "warnings": []}, {}
        if method == "PUT" and path.startswith("/lfs/"):
            oid = path.rsplit("/", 1)[-1]
            self.puts[oid] += 1
            if hashlib.sha256(body).hexdigest() != oid:
                return 400, {"error": "sha256 mismatch"}, {}
            self.lfs[oid] = body
            return 200, b"", {}
        if match := re.fullmatch(r"/datasets/([^/]+/[^/]+)\.git/info/lfs/objects/batch", path):
            return self._lfs_batch(json.loads(body))
        match = re.fullmatch(r"/api/datasets/([^/]+/[^/]+)/(\w[\w-]*)(?:/(.*))?", path)
        if not match:
            return 404, {"error": f"no route {method} {path}"}, {}
        repo_id, action, rest = match.groups()
        if repo_id not in self.repos:
            return 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
        repo = self.repos[repo_id]
        if method == "GET" and action == "refs":
            return 200, {
                "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": o}
                             for n, o in repo["branches"].items()],
                "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": o} for n, o in repo["tags"].items()],
                "converts": [],
            }, {}
        if method == "POST" and action == "branch":
            if rest in repo["branches"]:
                return 409, {"error": "Branch already exists"}, {}
            repo["branches"][rest] = repo["branches"]["main"]
            return 200, {}, {}
        if method == "POST" and action == "tag":
            tag = json.loads(body)["tag"]
            if tag in repo["tags"]:
                return 409, {"error": "Tag already exists"}, {}
            repo["tags"][tag] = repo["branches"].get(rest, rest)
            return 200, {}, {}
        if method == "GET" and action in ("tree", "revision"):
            revision = (rest or "main").split("/")[0]
            if revision not in repo["branches"] and revision not in repo["tags"]:
                return 404, {"error": "Revision not found"}, {"X-Error-Code": "RevisionNotFound"}
            files = self.files(repo_id, revision)
            if action == "revision":
                oid = repo["branches"].get(revision) or repo["tags"][revision]
                return 200, {"id": repo_id, "sha": oid, "private": repo["private"],
                             "siblings": [{"rfilename": p} for p in files]}, {}
            listing = [{"type": "file", "path": p, "size": len(d), "oid": _git_blob_oid(d)} for p, d in files.items()]
            return 200, listing, {}
        if method == "POST" and action == "preupload":
            files = self.files(repo_id, rest)
            return 200, {"files": [self._upload_mode(f["path"], files) for f in json.loads(body)["files"]]}, {}
        if method == "POST" and action == "commit":
            self.commit_posts += 1
            return self._commit(repo_id, rest, body)
        return 404, {"error": f"no route {method} {path}"}, {}

    def _create_repo(self, payload: dict):
        repo_id = f"{payload['organization']}/{payload['name']}"
        url = f"{self.endpoint}/datasets/{repo_id}"
        if repo_id in self.repos:
            return 409, {"error": "You already created this dataset repo", "url": url}, {}
        initial = {".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"}
        self.repos[repo_id] = {
            "type": payload.get("type"), "private": payload.get("visibility") == "private",
            "commits": {"0" * 40: {"files": initial, "parent": None, "message": "initial commit"}},
            "branches": {"main": "0" * 40}, "tags": {},
        }
        return 200, {"url": url}, {}

    def _upload_mode(self, path: str, remote: dict[str, bytes]) -> dict:
        lfs = path.endswith(".parquet")
        remote_oid = None
        if path in remote:
            data = remote[path]
            remote_oid = hashlib.sha256(data).hexdigest() if lfs else _git_blob_oid(data)
        return {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": remote_oid}

    def _lfs_batch(self, payload: dict):
        objects = []
        for item in payload["objects"]:
            entry = {"oid": item["oid"], "size": item["size"]}
            if item["oid"] not in self.lfs:  # stored objects need no upload: this is what makes resume work
                entry["actions"] = {"upload": {"href": f"{self.endpoint}/lfs/{item['oid']}"}}
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}, {}

    def _commit(self, repo_id: str, branch: str, body: bytes):
        repo = self.repos[repo_id]
        parent = repo["branches"][branch]
        files = dict(repo["commits"][parent]["files"])
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile":
                if value["oid"] not in self.lfs:
                    return 422, {"error": f"LFS object {value['oid']} was never uploaded"}, {}
                files[value["path"]] = self.lfs[value["oid"]]
            elif line["key"] == "deletedFile":
                files.pop(value["path"])
        tree = sorted((p, _git_blob_oid(d)) for p, d in files.items())
        oid = hashlib.sha1(json.dumps([parent, tree]).encode()).hexdigest()
        repo["commits"][oid] = {"files": files, "parent": parent, "message": lines[0]["value"]["summary"]}
        repo["branches"][branch] = oid
        commit_url = f"{self.endpoint}/datasets/{repo_id}/commit/{oid}"
        return 200, {"success": True, "commitOid": oid, "commitUrl": commit_url}, {}


def _read_body(request: BaseHTTPRequestHandler) -> bytes:
    if request.headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(request.rfile.readline().strip(), 16)
            if size == 0:
                request.rfile.readline()
                return b"".join(chunks)
            chunks.append(request.rfile.read(size))
            request.rfile.readline()
    return request.rfile.read(int(request.headers.get("content-length") or 0))


@pytest.fixture
def hub(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    # The stand-in is local, and speaks the LFS protocol, not Xet's storage protocol.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    stand_in = HubStandIn()
    stand_in.thread.start()
    yield stand_in
    stand_in.server.shutdown()
    stand_in.server.server_close()


def publish(tmp_path: Path, name: str = "run", keep_rows: int | None = None, shards: int = 3) -> Path:
    run_dir = tmp_path / name
    shutil.copytree(FIXTURE_RUN, run_dir)
    output = pl.read_parquet(run_dir / "output.parquet")
    if keep_rows is not None:
        output = output.head(keep_rows)
        output.write_parquet(run_dir / "output.parquet")
    config = PublishConfig(
        output_dir=tmp_path / "published", hub_repo_id=REPO,
        shard_size_mb=output.estimated_size("mb") / (shards - 0.5),
    )
    return publish_run(run_dir, config).folder


def local_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_push_creates_private_repo_commit_and_version_tag(hub, tmp_path):
    folder = publish(tmp_path)
    result = push_to_hub(folder, REPO, endpoint=hub.endpoint)

    repo = hub.repos[REPO]
    assert (repo["type"], repo["private"]) == ("dataset", True)
    assert result.created and result.version == "v1" and result.branch == "main"
    assert repo["tags"] == {"v1": result.commit} and repo["branches"]["main"] == result.commit
    pushed = hub.files(REPO, "v1")
    expected = local_files(folder)
    assert len([p for p in expected if p.startswith("data/")]) == 3
    assert {p: pushed[p] for p in expected} == expected  # every file, byte for byte
    assert set(pushed) - set(expected) == {".gitattributes"}
    assert all(shard in hub.lfs.values() for path, shard in expected.items() if path.startswith("data/"))
    assert all(auth == (None if method == "PUT" else f"Bearer {TOKEN}") for method, auth in hub.authorizations)

    commits = len(repo["commits"])
    again = push_to_hub(folder, REPO, endpoint=hub.endpoint)
    assert not again.created and again.commit == result.commit
    assert len(repo["commits"]) == commits


def test_each_version_is_a_tag_and_main_holds_only_the_latest_shards(hub, tmp_path):
    v1 = publish(tmp_path, "run1", shards=3)
    v2 = publish(tmp_path, "run2", keep_rows=4, shards=2)
    first = push_to_hub(v1, REPO, endpoint=hub.endpoint)
    second = push_to_hub(v2, REPO, endpoint=hub.endpoint)

    assert (v1.name, v2.name) == ("v1", "v2")
    assert hub.repos[REPO]["tags"] == {"v1": first.commit, "v2": second.commit}
    assert sorted(p for p in hub.files(REPO, "v1") if p.startswith("data/")) == sorted(
        p for p in local_files(v1) if p.startswith("data/"))
    main_data = sorted(p for p in hub.files(REPO, "main") if p.startswith("data/"))
    assert main_data == sorted(p for p in local_files(v2) if p.startswith("data/"))  # v1's shards were removed
    assert hub.files(REPO, "main")["lineage.json"] == (v2 / "lineage.json").read_bytes()


def test_server_errors_mid_upload_are_retried(hub, tmp_path, caplog):
    folder = publish(tmp_path)
    second_shard = hashlib.sha256((folder / "data" / "train-00001-of-00003.parquet").read_bytes()).hexdigest()
    hub.fail("PUT", f"/lfs/{second_shard}", 503)
    hub.fail("POST", r"/api/datasets/.*/commit/main", 500)

    with caplog.at_level(logging.WARNING):
        result = push_to_hub(folder, REPO, endpoint=hub.endpoint, num_threads=1)

    assert result.created
    assert hub.puts[second_shard] == 2  # the 503 answer, then the upload that succeeded
    assert hub.commit_posts == 2  # the 500 answer, then the commit
    assert set(hub.files(REPO, "v1")) >= set(local_files(folder))
    assert "retrying" in caplog.text


def test_interrupted_push_resumes_without_resending_uploaded_shards(hub, tmp_path):
    folder = publish(tmp_path)
    oids = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((folder / "data").iterdir())
    }
    third = oids["train-00002-of-00003.parquet"]
    hub.fail("PUT", f"/lfs/{third}", 403)  # not a transient error: the push stops

    with pytest.raises(Exception, match="train-00002-of-00003"):
        push_to_hub(folder, REPO, endpoint=hub.endpoint, num_threads=1)
    assert hub.repos[REPO]["tags"] == {} and hub.repos[REPO]["branches"]["main"] == "0" * 40  # nothing half-committed

    result = push_to_hub(folder, REPO, endpoint=hub.endpoint, num_threads=1)
    assert result.created
    assert {name: hub.puts[oid] for name, oid in oids.items()} == {
        "train-00000-of-00003.parquet": 1, "train-00001-of-00003.parquet": 1, "train-00002-of-00003.parquet": 2,
    }


def test_token_is_absent_from_logs_and_written_files(hub, tmp_path, caplog, capfd, monkeypatch):
    import huggingface_hub.constants as hf_constants
    from huggingface_hub.utils import logging as hf_logging

    monkeypatch.setattr(hf_constants, "HF_DEBUG", True)  # huggingface_hub logs every request it sends
    hf_logging.set_verbosity_debug()
    try:
        folder = publish(tmp_path)
        hub.fail("POST", r"/api/datasets/.*/commit/main", 502)
        with caplog.at_level(logging.DEBUG):
            push_to_hub(folder, REPO, endpoint=hub.endpoint)
    finally:
        hf_logging.set_verbosity_warning()

    assert (  # it was sent to the Hub...
        "POST", f"Bearer {TOKEN}") in hub.authorizations
    captured = capfd.readouterr()
    assert len(caplog.text) > 0 and "Send: curl" in caplog.text
    for text in (caplog.text, captured.out, captured.err):
        assert TOKEN not in text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_push_needs_hf_token(hub, tmp_path, monkeypatch):
    folder = publish(tmp_path)
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubPushError, match="HF_TOKEN"):
        push_to_hub(folder, REPO, endpoint=hub.endpoint)
    assert hub.requests == []
