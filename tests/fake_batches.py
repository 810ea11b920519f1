"""The fake provider's batch APIs (served by tests/fake_openai.py's server):

OpenAI: POST /v1/files (multipart, purpose "batch"), GET /v1/files/{id}/content,
POST /v1/batches, GET /v1/batches/{id}, POST /v1/batches/{id}/cancel, GET /v1/batches.
Anthropic: POST /v1/messages/batches, GET /v1/messages/batches/{id},
GET /v1/messages/batches/{id}/results (JSONL), GET /v1/messages/batches,
POST /v1/messages/batches/{id}/cancel.

A batch ends `duration_s` seconds after it was created (the knob: set it on the fake).
Its lines are answered like single calls (an echo of the last user message, usage in
words) with directives in that message:
  [batch:error]   the line fails (OpenAI: HTTP 500 in the error file; Anthropic: errored)
  [batch:expire]  the line expires (OpenAI: batch_expired; Anthropic: expired)
  [reply:TEXT]    answer TEXT
Results are written in shuffled order. `created` counts the batches created per
provider, `lines` the lines answered per message (a test asserts "called once")."""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler
from typing import Any

BATCH_DIRECTIVE = re.compile(r"\[batch:(error|expire)\]")
REPLY = re.compile(r"\[reply:([^\]]*)\]")


def _words(text: str) -> int:
    return max(1, len(text.split()))


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


class FakeBatches:
    def __init__(self, root_url: Any) -> None:
        self._root_url = root_url  # a callable: the server's address is known after bind
        self.duration_s = 1.0
        self.created: Counter[str] = Counter()
        self.lines: Counter[str] = Counter()
        self.files: dict[str, bytes] = {}
        self.openai: dict[str, dict[str, Any]] = {}
        self.anthropic: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()  # answering a batch holds it while lines count
        self._seq = 0

    def _next(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}{self._seq:06d}"

    def answered(self, key: str) -> int:
        with self._lock:
            return self.lines[key]

    # --- routing ------------------------------------------------------------------

    def serve(self, handler: BaseHTTPRequestHandler, method: str) -> bool:
        """Answer a batch route; False when the path is not one of them."""
        path = handler.path.split("?", 1)[0]
        parts = [part for part in path.split("/") if part]
        if parts[:1] != ["v1"]:
            return False
        rest = parts[1:]
        if rest[:1] == ["files"] or rest[:1] == ["batches"]:
            self._openai(handler, method, rest)
            return True
        if rest[:2] == ["messages", "batches"]:
            self._anthropic(handler, method, rest[2:])
            return True
        return False

    @staticmethod
    def _body(handler: BaseHTTPRequestHandler) -> bytes:
        length = int(handler.headers.get("Content-Length", "0"))
        return handler.rfile.read(length) if length else b""

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler, status: int, body: Any, content_type: str = ""
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", content_type or "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    # --- answers to lines -----------------------------------------------------------

    def _answer(self, key: str) -> tuple[str | None, str]:
        """(what goes wrong: error | expire | None, the reply)."""
        with self._lock:
            self.lines[key] += 1
        wrong = BATCH_DIRECTIVE.search(key)
        reply = REPLY.search(key)
        return (wrong.group(1) if wrong else None), (reply.group(1) if reply else f"echo: {key}")

    @staticmethod
    def _key(messages: list[dict[str, Any]]) -> str:
        users = [m.get("content", "") for m in messages if m.get("role") == "user"]
        return str(users[-1]) if users else ""

    # --- OpenAI ---------------------------------------------------------------------

    def _openai(self, handler: BaseHTTPRequestHandler, method: str, rest: list[str]) -> None:
        if rest == ["files"] and method == "POST":
            self._upload(handler)
        elif len(rest) == 3 and rest[0] == "files" and rest[2] == "content":
            data = self.files.get(rest[1])
            if data is None:
                self._send(handler, 404, {"error": {"message": "no such file"}})
            else:
                self._send(handler, 200, data, "application/octet-stream")
        elif rest == ["batches"] and method == "POST":
            self._create_openai(handler)
        elif rest == ["batches"]:
            with self._lock:
                batches = [self._openai_view(b) for b in self.openai.values()]
            batches.sort(key=lambda b: (b["created_at"], b["id"]), reverse=True)
            self._send(handler, 200, {"object": "list", "data": batches, "has_more": False})
        elif len(rest) == 2 and rest[0] == "batches":
            batch = self.openai.get(rest[1])
            if batch is None:
                self._send(handler, 404, {"error": {"message": "no such batch"}})
            else:
                self._send(handler, 200, self._openai_view(batch))
        elif len(rest) == 3 and rest[0] == "batches" and rest[2] == "cancel":
            batch = self.openai.get(rest[1])
            if batch is None:
                self._send(handler, 404, {"error": {"message": "no such batch"}})
                return
            with self._lock:
                batch.setdefault("cancelled_at", time.time())
            self._send(handler, 200, self._openai_view(batch))
        else:
            self._send(handler, 404, {"error": {"message": "no such route"}})

    def _upload(self, handler: BaseHTTPRequestHandler) -> None:
        body = self._body(handler)
        head = f"Content-Type: {handler.headers.get('Content-Type', '')}\r\n\r\n".encode()
        message = BytesParser(policy=default_policy).parsebytes(head + body)
        content = b""
        purpose = ""
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if name == "file":
                content = bytes(payload)
            elif name == "purpose":
                purpose = bytes(payload).decode()
        with self._lock:
            file_id = self._next("file-")
            self.files[file_id] = content
        self._send(
            handler,
            200,
            {
                "id": file_id,
                "object": "file",
                "bytes": len(content),
                "created_at": int(time.time()),
                "filename": "input.jsonl",
                "purpose": purpose or "batch",
                "status": "processed",
            },
        )

    def _create_openai(self, handler: BaseHTTPRequestHandler) -> None:
        payload = json.loads(self._body(handler) or b"{}")
        data = self.files.get(str(payload.get("input_file_id")))
        if data is None:
            self._send(handler, 400, {"error": {"message": "no such input file"}})
            return
        lines = [json.loads(line) for line in data.splitlines() if line.strip()]
        with self._lock:
            batch_id = self._next("batch_")
            self.created["openai"] += 1
            self.openai[batch_id] = {
                "id": batch_id,
                "created": time.time(),
                "endpoint": payload.get("endpoint"),
                "input_file_id": payload.get("input_file_id"),
                "metadata": payload.get("metadata"),
                "lines": lines,
            }
        self._send(handler, 200, self._openai_view(self.openai[batch_id]))

    def _openai_view(self, batch: dict[str, Any]) -> dict[str, Any]:
        done = self._finish_openai(batch)
        status = "in_progress"
        if done:
            status = "cancelled" if "cancelled_at" in batch else "completed"
        counts = batch.get("counts", {"total": len(batch["lines"]), "completed": 0, "failed": 0})
        return {
            "id": batch["id"],
            "object": "batch",
            "endpoint": batch["endpoint"],
            "input_file_id": batch["input_file_id"],
            "completion_window": "24h",
            "status": status,
            "created_at": int(batch["created"]),
            "metadata": batch["metadata"],
            "output_file_id": batch.get("output_file_id"),
            "error_file_id": batch.get("error_file_id"),
            "request_counts": counts,
        }

    def _finish_openai(self, batch: dict[str, Any]) -> bool:
        """Once its time is up (or it was cancelled), answer every line, once."""
        with self._lock:
            if "answered" in batch:
                return True
            if "cancelled_at" not in batch and time.time() - batch["created"] < self.duration_s:
                return False
            self._answer_openai(batch)
            batch["answered"] = True
            return True

    def _answer_openai(self, batch: dict[str, Any]) -> None:
        output: list[str] = []
        errors: list[str] = []
        cancelled = "cancelled_at" in batch
        for line in batch["lines"]:
            custom_id = line["custom_id"]
            body = line.get("body", {})
            if cancelled:
                errors.append(self._openai_error(custom_id, "batch_cancelled"))
                continue
            if line.get("url") == "/v1/embeddings":
                output.append(self._openai_embedding(custom_id, body))
                continue
            wrong, reply = self._answer(self._key(body.get("messages", [])))
            if wrong == "expire":
                errors.append(self._openai_error(custom_id, "batch_expired"))
            elif wrong == "error":
                errors.append(
                    json.dumps(
                        {
                            "id": f"req_{custom_id}",
                            "custom_id": custom_id,
                            "response": {
                                "status_code": 500,
                                "request_id": f"req_{custom_id}",
                                "body": {"error": {"message": "injected", "type": "server_error"}},
                            },
                            "error": None,
                        }
                    )
                )
            else:
                output.append(self._openai_chat(custom_id, body, reply))
        random.shuffle(output)
        random.shuffle(errors)
        if output:
            batch["output_file_id"] = self._next("file-")
            self.files[batch["output_file_id"]] = ("\n".join(output) + "\n").encode()
        if errors:
            batch["error_file_id"] = self._next("file-")
            self.files[batch["error_file_id"]] = ("\n".join(errors) + "\n").encode()
        batch["counts"] = {
            "total": len(batch["lines"]),
            "completed": len(output),
            "failed": len(errors),
        }

    @staticmethod
    def _openai_error(custom_id: str, code: str) -> str:
        return json.dumps(
            {
                "id": f"req_{custom_id}",
                "custom_id": custom_id,
                "response": None,
                "error": {"code": code, "message": code.replace("_", " ")},
            }
        )

    @staticmethod
    def _openai_chat(custom_id: str, body: dict[str, Any], reply: str) -> str:
        messages = body.get("messages", [])
        prompt = sum(_words(str(m.get("content", ""))) for m in messages)
        completion = _words(reply)
        return json.dumps(
            {
                "id": f"req_{custom_id}",
                "custom_id": custom_id,
                "response": {
                    "status_code": 200,
                    "request_id": f"req_{custom_id}",
                    "body": {
                        "id": f"chatcmpl-{custom_id}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", ""),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": reply},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": prompt,
                            "completion_tokens": completion,
                            "total_tokens": prompt + completion,
                        },
                    },
                },
                "error": None,
            }
        )

    def _openai_embedding(self, custom_id: str, body: dict[str, Any]) -> str:
        inputs = body.get("input", [])
        inputs = [inputs] if isinstance(inputs, str) else inputs
        with self._lock:
            self.lines["\n".join(inputs)] += 1
        tokens = sum(_words(text) for text in inputs)
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(text)), 0.5, i]}
            for i, text in enumerate(inputs)
        ]
        response = {
            "object": "list",
            "data": data,
            "model": body.get("model", ""),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return json.dumps(
            {
                "id": f"req_{custom_id}",
                "custom_id": custom_id,
                "response": {"status_code": 200, "request_id": custom_id, "body": response},
                "error": None,
            }
        )

    # --- Anthropic ------------------------------------------------------------------

    def _anthropic(self, handler: BaseHTTPRequestHandler, method: str, rest: list[str]) -> None:
        if not rest and method == "POST":
            payload = json.loads(self._body(handler) or b"{}")
            with self._lock:
                batch_id = self._next("msgbatch_")
                self.created["anthropic"] += 1
                self.anthropic[batch_id] = {
                    "id": batch_id,
                    "created": time.time(),
                    "requests": payload.get("requests", []),
                }
            self._send(handler, 200, self._anthropic_view(self.anthropic[batch_id]))
        elif not rest:
            with self._lock:
                batches = list(self.anthropic.values())
            views = [self._anthropic_view(b) for b in batches]
            views.sort(key=lambda b: (b["created_at"], b["id"]), reverse=True)
            self._send(handler, 200, {"data": views, "has_more": False})
        elif len(rest) == 1 and method == "GET":
            batch = self.anthropic.get(rest[0])
            if batch is None:
                self._send(handler, 404, {"type": "error", "error": {"type": "not_found_error"}})
            else:
                self._send(handler, 200, self._anthropic_view(batch))
        elif len(rest) == 2 and rest[1] == "cancel" and method == "POST":
            batch = self.anthropic.get(rest[0])
            if batch is None:
                self._send(handler, 404, {"type": "error", "error": {"type": "not_found_error"}})
                return
            with self._lock:
                batch.setdefault("cancelled_at", time.time())
            self._send(handler, 200, self._anthropic_view(batch))
        elif len(rest) == 2 and rest[1] == "results":
            batch = self.anthropic.get(rest[0])
            if batch is None or not self._finish_anthropic(batch):
                self._send(handler, 404, {"type": "error", "error": {"type": "not_found_error"}})
                return
            data = ("\n".join(json.dumps(r) for r in batch["results"]) + "\n").encode()
            self._send(handler, 200, data, "application/binary")
        else:
            self._send(handler, 404, {"type": "error", "error": {"type": "not_found_error"}})

    def _anthropic_view(self, batch: dict[str, Any]) -> dict[str, Any]:
        done = self._finish_anthropic(batch)
        kinds = Counter(r["result"]["type"] for r in batch.get("results", []))
        total = len(batch["requests"])
        return {
            "id": batch["id"],
            "type": "message_batch",
            "processing_status": "ended" if done else "in_progress",
            "request_counts": {
                "processing": 0 if done else total,
                "succeeded": kinds["succeeded"],
                "errored": kinds["errored"],
                "canceled": kinds["canceled"],
                "expired": kinds["expired"],
            },
            "created_at": _iso(batch["created"]),
            "expires_at": _iso(batch["created"] + 86400),
            "ended_at": _iso(time.time()) if done else None,
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": (
                f"{self._root_url()}/v1/messages/batches/{batch['id']}/results" if done else None
            ),
        }

    def _finish_anthropic(self, batch: dict[str, Any]) -> bool:
        with self._lock:
            if "results" in batch:
                return True
            if "cancelled_at" not in batch and time.time() - batch["created"] < self.duration_s:
                return False
            batch["results"] = self._answer_anthropic(batch)
            return True

    def _answer_anthropic(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        results = []
        for request in batch["requests"]:
            custom_id = request["custom_id"]
            if "cancelled_at" in batch:
                results.append({"custom_id": custom_id, "result": {"type": "canceled"}})
                continue
            params = request.get("params", {})
            wrong, reply = self._answer(self._key(params.get("messages", [])))
            if wrong == "expire":
                results.append({"custom_id": custom_id, "result": {"type": "expired"}})
                continue
            if wrong == "error":
                error = {"type": "error", "error": {"type": "api_error", "message": "injected"}}
                results.append(
                    {"custom_id": custom_id, "result": {"type": "errored", "error": error}}
                )
                continue
            results.append(
                {
                    "custom_id": custom_id,
                    "result": {"type": "succeeded", "message": _message(params, reply, custom_id)},
                }
            )
        random.shuffle(results)
        return results


def _message(params: dict[str, Any], reply: str, custom_id: str) -> dict[str, Any]:
    messages = params.get("messages", [])
    system = params.get("system")
    prompt = sum(_words(str(m.get("content", ""))) for m in messages)
    prompt += _words(system) if system else 0
    content: list[dict[str, Any]]
    if params.get("tools"):
        tool = params["tools"][0]["name"]
        content = [
            {"type": "tool_use", "id": f"tu_{custom_id}", "name": tool, "input": json.loads(reply)}
        ]
        stop = "tool_use"
    else:
        content = [{"type": "text", "text": reply}]
        stop = "end_turn"
    return {
        "id": f"msg_{custom_id}",
        "type": "message",
        "role": "assistant",
        "model": params.get("model", ""),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": prompt, "output_tokens": _words(reply)},
    }
