"""The Responses API's streamed events of one job, derived from its job events.

The list is a pure function of the job's events (aijobs/streaming/events.py, read from
the first) and of the job once it has ended, numbered 0, 1, 2, … by `sequence_number`:
any API process that reads the same job regenerates the same list, so a client that
lost its connection resumes after the last number it saw (GET /v1/responses/{id}
?stream=true&starting_after=N).

    response.created (queued)   at once
    response.in_progress        when the job starts running (or when it ends, if it
                                never ran: a cache hit, a deduplicated job)
    response.output_item.added, response.content_part.added   before the first text
    response.output_text.delta  per delta; an attempt that fails after its deltas gives
                                an `error` event, and the next attempt's text follows on
                                the same item (output_text.done has the final text)
    response.output_text.done, response.content_part.done, response.output_item.done,
    response.completed | response.incomplete | response.failed   when the job ends
A job that ends failed or cancelled ends with response.failed (its Response's status
says which); there is no response.cancelled event in OpenAI's stream.
"""

from __future__ import annotations

import copy
from typing import Any

from aijobs.jobs import responses_shapes
from aijobs.streaming.events import Event

_ENDINGS = {"completed": "response.completed", "incomplete": "response.incomplete"}


class ResponseEvents:
    """Feed it the job's events in order; each call returns the Responses events they
    make, already numbered."""

    def __init__(self, started: dict[str, Any]) -> None:
        # The Response as it starts (responses_shapes.start): the same for every reader.
        self._started = started
        self._item_id = responses_shapes.message_id(responses_shapes.job_id_of(started["id"]))
        self._next = 0
        self._running = False
        self._item_open = False
        self._text = ""  # the text since the last void attempt
        self._attempt_deltas = 0  # deltas sent of the attempt now streaming

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._next, **fields}
        self._next += 1
        return event

    def _snapshot(self, status: str) -> dict[str, Any]:
        response = copy.deepcopy(self._started)
        response["status"] = status
        return response

    def opening(self) -> list[dict[str, Any]]:
        return [self._event("response.created", response=self._snapshot("queued"))]

    def _in_progress(self) -> list[dict[str, Any]]:
        if self._running:
            return []
        self._running = True
        return [self._event("response.in_progress", response=self._snapshot("in_progress"))]

    def _item(self, status: str, text: str) -> dict[str, Any]:
        return responses_shapes.output_message(self._item_id, text, status)

    def _place(self) -> dict[str, Any]:
        return {"item_id": self._item_id, "output_index": 0, "content_index": 0}

    def _open_item(self) -> list[dict[str, Any]]:
        if self._item_open:
            return []
        self._item_open = True
        return [
            self._event(
                "response.output_item.added", output_index=0, item=self._item("in_progress", "")
            ),
            self._event(
                "response.content_part.added", **self._place(), part=responses_shapes.text_part("")
            ),
        ]

    def _delta(self, text: str) -> list[dict[str, Any]]:
        events = self._open_item()
        self._text += text
        self._attempt_deltas += 1
        events.append(
            self._event("response.output_text.delta", **self._place(), delta=text, logprobs=[])
        )
        return events

    def _void(self, code: str, message: str) -> list[dict[str, Any]]:
        """The text streamed so far will not be the answer: an `error` event."""
        self._text = ""
        self._attempt_deltas = 0
        return [self._event("error", code=code, message=message, param=None)]

    def feed(self, event: Event) -> list[dict[str, Any]]:
        """The Responses events one job event (not `done`: see `finish`) makes."""
        if event.type == "status" and event.data.get("status") == "running":
            return self._in_progress()
        if event.type == "attempt":
            return self._in_progress()
        if event.type == "delta":
            text = str(event.data.get("text") or "")
            return [*self._in_progress(), *self._delta(text)] if text else []
        if event.type == "reset" and self._attempt_deltas:
            attempt = event.data.get("attempt")
            code = str(event.data.get("code") or "internal")
            which = f"attempt {attempt}" if attempt is not None else "the attempt"
            message = (
                f"{which} failed mid-stream ({code}); the text it streamed is void. The "
                f"response {self._started['id']} is retrying: the next attempt's text follows."
            )
            return self._void(code, message)
        if event.type == "reset":
            self._attempt_deltas = 0
        return []

    def finish(self, final: dict[str, Any]) -> list[dict[str, Any]]:
        """The last events, from the ended job as a Response (responses_shapes.
        response_object): the rest of the text, the item's end, the Response's end."""
        events = self._in_progress()
        status = final["status"]
        if status not in _ENDINGS:
            return [*events, self._event("response.failed", response=final)]
        text = final["output"][0]["content"][0]["text"] if final["output"] else ""
        if self._item_open and not text.startswith(self._text):
            # What was streamed is not how the answer begins (a call that did not stream
            # after a void one): say so, then send the whole text.
            events += self._void("internal", "the streamed text is void; the whole answer follows")
        rest = text[len(self._text) :]
        events += self._open_item()
        if rest:
            events += self._delta(rest)
        item_status = "incomplete" if status == "incomplete" else "completed"
        events += [
            self._event("response.output_text.done", **self._place(), text=text, logprobs=[]),
            self._event(
                "response.content_part.done", **self._place(), part=responses_shapes.text_part(text)
            ),
            self._event(
                "response.output_item.done", output_index=0, item=self._item(item_status, text)
            ),
            self._event(_ENDINGS[status], response=final),
        ]
        return events
