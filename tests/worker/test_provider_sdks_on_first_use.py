"""The provider SDKs are imported on a provider's first use, not at a worker's boot
(each takes about a second to import); their errors are still mapped once loaded."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_a_worker_boots_without_the_provider_sdks() -> None:
    probe = (
        "import sys, worker.celery_app, worker.tasks;"
        "from worker.providers.registry import provider_for;"
        "provider_for('sim/echo');"
        "print(sorted(m for m in ('openai', 'anthropic') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stderr


def test_each_sdk_loads_with_its_provider_and_its_errors_are_mapped() -> None:
    probe = (
        "import sys, httpx2;"
        "from worker.providers.registry import provider_for;"
        "from worker.providers.errors import map_exception;"
        "provider_for('anthropic/claude-haiku-4-5');"
        "assert 'anthropic' in sys.modules and 'openai' not in sys.modules;"
        "import anthropic;"
        "r = httpx2.Request('POST', 'https://x.invalid/v1/messages');"
        "e = anthropic.APIConnectionError(request=r);"
        "print(map_exception(e).code, map_exception(e).retryable)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "provider_error True", done.stderr
