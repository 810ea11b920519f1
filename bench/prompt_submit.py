"""Submit cost of a job naming a prompt beside a plain job with the same rendered
messages: N in-process `submission.submit` calls of each, interleaved in rounds, on the
configured database (e.g. beside a running `aijobs dev`). Run: python -m bench.prompt_submit [N]"""

from __future__ import annotations

import statistics
import sys
import time
import uuid


def main(n: int = 1000) -> None:
    from aijobs.db import session_scope
    from aijobs.jobs import submission
    from aijobs.jobs.schemas import JobRequest
    from aijobs.prompts import service
    from aijobs.prompts.schemas import LabelTarget, VersionCreate
    from aijobs.tenants.service import authenticate, create_key
    from cli.dev import use_running_dev

    use_running_dev()
    with session_scope() as session:
        key = create_key(session, f"bench-{uuid.uuid4().hex[:8]}").api_key
    with session_scope() as session:
        tenant_id = authenticate(session, key).id
    system = "You are terse. " * 20
    with session_scope() as session:
        body = VersionCreate.model_validate(
            {
                "model": "sim/echo",
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": "Summarise for {{who}}: {{text}}"},
                ],
            }
        )
        service.create_version(session, tenant_id, "bench", body)
        service.set_label(session, tenant_id, "bench", "production", LabelTarget(version=1))

    def plain(i: int) -> JobRequest:
        return JobRequest.model_validate(
            {
                "model": "sim/echo",
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": f"Summarise for kids: plain {i} {uuid.uuid4()}"},
                ],
            }
        )

    def prompted(i: int) -> JobRequest:
        variables = {"who": "kids", "text": f"prompt {i} {uuid.uuid4()}"}
        return JobRequest.model_validate({"prompt": {"name": "bench", "variables": variables}})

    timings: dict[str, list[float]] = {"plain": [], "prompt": []}
    for i in range(n):
        for kind, make in (("plain", plain), ("prompt", prompted)):
            request = make(i)  # parsing is the same for both; time the submit
            start = time.perf_counter()
            with session_scope() as session:
                submission.submit(session, tenant_id, request)
            timings[kind].append(time.perf_counter() - start)
    for kind, values in timings.items():
        values.sort()
        print(
            f"{kind:6}  n={len(values)}  mean={statistics.fmean(values) * 1e3:.3f} ms"
            f"  p50={values[len(values) // 2] * 1e3:.3f} ms"
            f"  p95={values[int(len(values) * 0.95)] * 1e3:.3f} ms"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
