"""A scripted OpenAI-compatible chat endpoint on 127.0.0.1 for tests: each reply is the
text of the first tag found in the request's messages (or `default`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ScriptedChat:
    def __init__(self, model: str, replies: dict[str, str], default: str | None = None):
        self.model, self.replies, self.default = model, replies, default
        self.requests = 0
        self.prompts: list[str] = []
        self.lock = threading.Lock()
        self.url = ""

    def reply_to(self, prompt: str) -> str:
        reply = next((text for tag, text in self.replies.items() if tag in prompt), self.default)
        if reply is None:
            raise KeyError(f"no scripted reply for prompt {prompt[:120]!r}")
        return reply

    def handler(self) -> type[BaseHTTPRequestHandler]:
        state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send({"object": "list", "data": [{"id": state.model, "object": "model"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = json.dumps(body["messages"])
                reply = state.reply_to(prompt)
                with state.lock:
                    state.requests += 1
                    state.prompts.append(prompt)
                tokens = len(reply.split())
                self._send({
                    "id": "x", "object": "chat.completion", "model": state.model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens},
                })

        return Handler


def scripted_servers(model: str, default: str | None = None) -> Iterator[Callable[..., ScriptedChat]]:
    """For a fixture: yields start(replies, default=...) -> a running ScriptedChat with .url;
    every server started is shut down when the fixture ends."""
    servers: list[ThreadingHTTPServer] = []
    fallback = default

    def start(replies: dict[str, str], default: str | None = fallback) -> ScriptedChat:
        state = ScriptedChat(model, replies, default)
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        servers.append(httpd)
        return state

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()
