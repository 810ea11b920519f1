"""A small OpenAI- and Anthropic-compatible server: the one fake in the tests, at the
HTTP boundary, so the real SDK code runs.

It answers Chat Completions, Embeddings and Anthropic Messages, counts calls by the
last user message (and by model), and injects faults written into that message:
  [fail:500x2]  the first 2 calls with this message answer HTTP 500
  [status:400]  every call answers HTTP 400
  [429:1]       the first call answers 429 with Retry-After: 1
  [sleep:3]     wait 3 s before answering
  [down:NAME]   every call to model NAME answers HTTP 503
  [storm]       30% of calls answer 500, 10% answer 429, the rest succeed
  [reply:TEXT]  answer TEXT instead of echoing the message
  [broken]      answer 200 with a choice whose message is null (a malformed answer)
  [nul]         the reply holds a NUL character (U+0000), which Postgres text refuses
  [trickle:1]   send the answer's headers, then its body one byte a second (each read
                is quick, the whole answer takes minutes)
  [numbered]    the reply says which call with this message it answers ("call 2: ...")
  [long:40000]  report 40,000 output tokens, or, when the request caps the output
                (max_tokens, max_completion_tokens), at most the cap with finish_reason
                "length" (Anthropic: stop_reason "max_tokens")
  [score:0.9]   in a judge call (a system message starting "You are a judge"), answer
                {"score": 0.9, "reason": "..."}; [score:x] (not a number) answers text that
                is not JSON; without the directive a judge answers 0.5
  [bytes]       report input tokens as the UTF-8 bytes of the messages, the system text
                and the tools or response_format JSON (one token a byte, plus
                Anthropic's tool-use prompt): a worst-case tokenizer
  [cached:N]    N of the prompt's tokens were read from the prompt cache ([cached N] too):
                OpenAI's usage.prompt_tokens_details.cached_tokens (prompt_tokens counts
                them), Anthropic's cache_read_input_tokens (input_tokens does not)
  [cache_write:N]  Anthropic: N prompt tokens written to the cache
                (cache_creation_input_tokens, not in input_tokens)
  [reasoning:N] OpenAI: N of the completion's tokens were reasoning tokens
                (completion_tokens_details.reasoning_tokens; completion_tokens counts them)
Streaming: a chat call with "stream": true is answered as the provider streams it, in
chunked server-sent events: OpenAI's chat.completion.chunk objects (the role first, the
reply over several chunks, the finish_reason, then with stream_options.include_usage a
last chunk with no choices and the usage; then `data: [DONE]`), or Anthropic's events
(message_start with the input and cache tokens, the text_delta chunks, or the tool
input's JSON as input_json_delta chunks when a tool is forced, message_delta with the
stop_reason and output_tokens, message_stop). The usage is the unstreamed answer's, and
the directives above apply ([fail], [status], [429], [down] before the stream starts;
[broken] and [trickle] to unstreamed answers only). Three more:
  [chunks:3]    the reply in 3 chunks (by default, one a word with its spaces)
  [pace:0.05]   wait 0.05 s before each chunk of the reply, so deltas arrive over time
  [cut:2]       send the first 2 chunks of the reply, then close the connection with the
                answer unfinished (a stream broken mid-way)
`streamed(key)` tells, call by call, whether a chat call asked for a stream.
Quota mode (tests/fake_quota.py): with `fake.quota = Quota(model, requests=N, ...)` chat
calls to that model answer 429 with OpenAI's rate-limit headers once the window's
quota is spent, and carry the headers on every answer.
Each call's output cap is kept in `caps` (by message): {"max_tokens": N} or
{"max_completion_tokens": N}, or {} when the request sent none.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests import fake_quota
from tests.fake_batches import FakeBatches
from tests.fake_streams import Event, chat_stream, message_stream


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # hundreds of calls connect at once in the load tests


DIRECTIVES = (
    "fail|status|429|sleep|reply|down|storm|broken|nul|trickle|numbered|long|bytes|score"
    "|cached|cache_write|reasoning|chunks|pace|cut"
)
JUDGE_SYSTEM = "You are a judge"
DIRECTIVE = re.compile(rf"\[({DIRECTIVES}):?([^\]]*)\]")
CAP_FIELDS = ("max_tokens", "max_completion_tokens")
# Anthropic's system prompt for tool use (a forced tool, Claude 4 models).
TOOL_USE_PROMPT_TOKENS = 346


def words(text: str) -> int:
    return max(1, len(text.split()))


def _bytes(value: Any) -> int:
    return len((value if isinstance(value, str) else json.dumps(value)).encode())


def cache_tokens(directives: dict[str, str], name: str, prompt: int) -> int:
    """[cached:N] / [cached N] / [cache_write:N]: N, at most the prompt's tokens."""
    value = directives.get(name, "").strip(": ")
    return min(int(value), prompt) if value else 0


def output_tokens(directives: dict[str, str], reply: str, cap: int | None) -> tuple[int, bool]:
    """(tokens, capped): [long:N] answers N tokens unless the cap is lower."""
    tokens = int(directives["long"]) if "long" in directives else words(reply)
    if cap is not None and tokens > cap:
        return cap, True
    return tokens, False


def _judgement(score: str) -> str:
    try:
        value = float(score)
    except ValueError:
        return "I would rather not say."
    return json.dumps({"score": value, "reason": f"scored {value} by the fake judge"})


class FakeOpenAI:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.model_calls: Counter[tuple[str, str]] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        self.call_times: dict[str, list[float]] = {}
        self.caps: dict[str, list[dict[str, int]]] = {}
        # The messages (and the rest of the body) of each chat call, by its key.
        self.bodies: dict[str, list[dict[str, Any]]] = {}
        self.chat_bodies: list[dict[str, Any]] = []  # every chat call's body, in order
        self.streams: dict[str, list[bool]] = {}  # whether each chat call asked for a stream
        self.quota: fake_quota.Quota | None = None  # quota mode, off when None
        self._lock = threading.Lock()
        # The batch APIs (files, batches, message batches): tests/fake_batches.py.
        self.batches = FakeBatches(lambda: self.root_url)
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    def start(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()

    def count(self, key: str) -> int:
        with self._lock:
            return self.calls[key]

    def count_model(self, key: str, model: str) -> int:
        with self._lock:
            return self.model_calls[(key, model)]

    def received(self, key: str) -> list[dict[str, Any]]:
        """The chat request bodies received with this key (last user message), in order."""
        with self._lock:
            return list(self.bodies.get(key, []))

    def received_with(self, content: str) -> list[dict[str, Any]]:
        """The chat request bodies, of any key, that hold a message with exactly this
        content, in order (a retry that appends a user message has another key)."""
        with self._lock:
            bodies = list(self.chat_bodies)
        return [
            body
            for body in bodies
            if any(m.get("content") == content for m in body.get("messages", []))
        ]

    def caps_seen(self, key: str) -> list[dict[str, int]]:
        with self._lock:
            return list(self.caps.get(key, []))

    def streamed(self, key: str) -> list[bool]:
        """Whether each chat call with this key (OpenAI's or Anthropic's) asked for a
        stream, in order."""
        with self._lock:
            return list(self.streams.get(key, []))

    def _record(self, key: str, model: str, payload: dict[str, Any] | None = None) -> int:
        with self._lock:
            if payload is not None:
                cap = {name: payload[name] for name in CAP_FIELDS if name in payload}
                self.caps.setdefault(key, []).append(cap)
                self.streams.setdefault(key, []).append(bool(payload.get("stream")))
            self.calls[key] += 1
            self.model_calls[(key, model)] += 1
            self.call_times.setdefault(key, []).append(time.monotonic())
            return self.calls[key]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(
                self,
                status: int,
                body: dict[str, Any],
                headers: dict[str, str],
                trickle_s: float = 0.0,
            ) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if not trickle_s:
                    self.wfile.write(data)
                    return
                for i in range(len(data)):
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()
                    time.sleep(trickle_s)

            def _send_stream(
                self, events: list[Event], headers: dict[str, str], directives: dict[str, str]
            ) -> None:
                """A 200 answer of server-sent events in chunked transfer encoding, as
                the providers send them: [pace:S] waits before each reply chunk, [cut:N]
                closes the connection after N of them, the body unfinished."""
                pace = float(directives.get("pace") or 0)
                cut = int(directives["cut"]) if directives.get("cut") else None
                self.protocol_version = "HTTP/1.1"  # for chunked framing; closed after
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                sent = 0
                for event, data, is_reply in events:
                    if is_reply:
                        if sent == cut:
                            return  # no terminating chunk: the client sees the body cut
                        time.sleep(pace)
                        sent += 1
                    text = data if isinstance(data, str) else json.dumps(data)
                    frame = (f"event: {event}\n" if event else "") + f"data: {text}\n\n"
                    encoded = frame.encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(encoded), encoded))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")

            def do_GET(self) -> None:
                if not fake.batches.serve(self, "GET"):
                    self._send(404, {"error": {"message": "no such route"}}, {})

            def do_POST(self) -> None:
                if fake.batches.serve(self, "POST"):
                    return
                length = int(self.headers.get("Content-Length", "0"))
                payload = json.loads(self.rfile.read(length) or b"{}")
                model = str(payload.get("model", ""))
                with fake._lock:
                    fake.in_flight[model] += 1
                    fake.max_in_flight[model] = max(
                        fake.max_in_flight[model], fake.in_flight[model]
                    )
                try:
                    self._route(payload)
                finally:
                    with fake._lock:
                        fake.in_flight[model] -= 1

            def _route(self, payload: dict[str, Any]) -> None:
                if self.path.endswith("/v1/messages"):
                    self._anthropic(payload)
                elif self.path.endswith("/embeddings"):
                    self._embeddings(payload)
                elif self.path.endswith("/chat/completions"):
                    self._chat(payload)
                else:
                    self._send(404, {"error": {"message": "no such route"}}, {})

            def _fault(self, key: str, n: int, model: str) -> bool:
                """Apply the directives in key; True when an error answer was sent."""
                for name, arg in DIRECTIVE.findall(key):
                    if name == "down" and arg == model:
                        self._send(503, {"error": {"message": f"{model} is down"}}, {})
                        return True
                    if name == "storm":
                        roll = random.random()
                        if roll < 0.4:
                            status = 500 if roll < 0.3 else 429
                            self._send(status, {"error": {"message": "storm"}}, {})
                            return True
                    if name == "sleep":
                        time.sleep(float(arg))
                    elif name == "status":
                        self._send(int(arg), {"error": {"message": f"injected {arg}"}}, {})
                        return True
                    elif name == "fail":
                        status, _, times = arg.partition("x")
                        if n <= int(times or 1):
                            self._send(int(status), {"error": {"message": "injected"}}, {})
                            return True
                    elif name == "429" and n <= 1:
                        body = {"error": {"message": "slow down"}}
                        self._send(429, body, {"Retry-After": arg})
                        return True
                return False

            def _chat(self, payload: dict[str, Any]) -> None:
                messages = payload.get("messages", [])
                users = [m["content"] for m in messages if m.get("role") == "user"]
                key = users[-1] if users else ""
                n = fake._record(key, payload.get("model", ""), payload)
                with fake._lock:
                    fake.bodies.setdefault(key, []).append(payload)
                    fake.chat_bodies.append(payload)
                quota = fake.quota
                allowed, quota_headers = (
                    quota.take(payload.get("model", ""), fake_quota.tokens_of(payload))
                    if quota is not None
                    else (True, {})
                )
                if not allowed:
                    self._send(429, {"error": {"message": "quota spent"}}, quota_headers)
                    return
                if self._fault(key, n, payload.get("model", "")):
                    return
                directives = dict(DIRECTIVE.findall(key))
                cap = payload.get("max_completion_tokens", payload.get("max_tokens"))
                replies = [arg for name, arg in DIRECTIVE.findall(key) if name == "reply"]
                reply = replies[0] if replies else f"echo: {key}"
                if "nul" in directives:
                    reply = "before\u0000after"
                if "numbered" in directives:
                    reply = f"call {n}: {reply}"
                if any(
                    m.get("role") == "system" and str(m.get("content", "")).startswith(JUDGE_SYSTEM)
                    for m in messages
                ):
                    reply = _judgement(directives.get("score", "0.5"))
                prompt = sum(words(m["content"]) for m in messages)
                if "bytes" in directives:
                    prompt = sum(_bytes(m["content"]) for m in messages)
                    prompt += (
                        _bytes(payload["response_format"]) if "response_format" in payload else 0
                    )
                completion, capped = output_tokens(directives, reply, cap)
                broken = "broken" in directives
                message: dict[str, Any] | None = {"role": "assistant", "content": reply}
                answer = {
                    "id": f"chatcmpl-{n}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": payload.get("model", ""),
                    "choices": [
                        {
                            "index": 0,
                            "message": None if broken else message,
                            "finish_reason": "length" if capped else "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt,
                        "completion_tokens": completion,
                        "total_tokens": prompt + completion,
                        "prompt_tokens_details": {
                            "cached_tokens": cache_tokens(directives, "cached", prompt)
                        },
                        "completion_tokens_details": {
                            "reasoning_tokens": cache_tokens(directives, "reasoning", completion)
                        },
                    },
                }
                if payload.get("stream"):
                    usage = bool((payload.get("stream_options") or {}).get("include_usage"))
                    events = chat_stream(answer, directives, usage)
                    self._send_stream(events, quota_headers, directives)
                    return
                trickle_s = float(directives.get("trickle") or 0)
                self._send(200, answer, quota_headers, trickle_s=trickle_s)

            def _embeddings(self, payload: dict[str, Any]) -> None:
                inputs = payload.get("input", [])
                inputs = [inputs] if isinstance(inputs, str) else inputs
                key = "\n".join(inputs)
                n = fake._record(key, payload.get("model", ""))
                if self._fault(key, n, payload.get("model", "")):
                    return
                data = [
                    {"object": "embedding", "index": i, "embedding": [float(len(text)), 0.5, i]}
                    for i, text in enumerate(inputs)
                ]
                tokens = sum(words(text) for text in inputs)
                self._send(
                    200,
                    {
                        "object": "list",
                        "data": data,
                        "model": payload.get("model", ""),
                        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                    },
                    {},
                )

            def _anthropic(self, payload: dict[str, Any]) -> None:
                messages = payload.get("messages", [])
                users = [m["content"] for m in messages if m.get("role") == "user"]
                key = users[-1] if users else ""
                model = payload.get("model", "")
                n = fake._record(key, model, payload)
                if self._fault(key, n, model):
                    return
                directives = dict(DIRECTIVE.findall(key))
                replies = [arg for name, arg in DIRECTIVE.findall(key) if name == "reply"]
                reply = replies[0] if replies else f"echo: {key}"
                content: list[dict[str, Any]]
                if payload.get("tools"):
                    tool = payload["tools"][0]["name"]
                    content = [
                        {
                            "type": "tool_use",
                            "id": f"tu_{n}",
                            "name": tool,
                            "input": json.loads(reply),
                        }
                    ]
                else:
                    content = [{"type": "text", "text": reply}]
                system = payload.get("system")
                prompt = sum(words(m["content"]) for m in messages)
                prompt += words(system) if system else 0
                if "bytes" in directives:
                    prompt = sum(_bytes(m["content"]) for m in messages) + _bytes(system or "")
                    if payload.get("tools"):
                        prompt += _bytes(payload["tools"]) + _bytes(payload["tool_choice"])
                        prompt += TOOL_USE_PROMPT_TOKENS
                completion, capped = output_tokens(directives, reply, payload.get("max_tokens"))
                stop_reason = "tool_use" if payload.get("tools") else "end_turn"
                cached = cache_tokens(directives, "cached", prompt)
                written = cache_tokens(directives, "cache_write", prompt - cached)
                answer = {
                    "id": f"msg_{n}",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": content,
                    "stop_reason": "max_tokens" if capped else stop_reason,
                    "stop_sequence": None,
                    "usage": {
                        # Anthropic's input_tokens leaves out the cache's tokens.
                        "input_tokens": prompt - cached - written,
                        "output_tokens": completion,
                        "cache_read_input_tokens": cached,
                        "cache_creation_input_tokens": written,
                    },
                }
                if payload.get("stream"):
                    self._send_stream(message_stream(answer, directives), {}, directives)
                    return
                self._send(200, answer, {})

        return Handler
