"""`payments webhooks test URL` against the README's ten-line receiver (DESIGN.md §9):
the ping is signed with the endpoint's secret, the README's code accepts it, and refuses
it under another secret."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from config import PROJECT_ROOT
from tests.support.live_server import serve
from tests.support.webhooks import register

PAYMENTS = str(Path(sys.executable).parent / "payments")


def _readme_receiver(secret: str):
    """The README's receiver, run as written but for its SECRET."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    code = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
                if "Payments-Signature" in block)
    assert len(code.strip().splitlines()) <= 13
    namespace: dict = {"__name__": "__main__"}  # so Flask finds a root path
    exec(code.replace('"whsec_..."', repr(secret)), namespace)  # noqa: S102 - our README
    return namespace["app"]


def _ping(env: dict[str, str], url: str, *extra: str) -> tuple[int, dict]:
    done = subprocess.run([PAYMENTS, "webhooks", "test", url, *extra], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def test_a_signed_ping_passes_the_readme_receiver(api, admin_key, stack_env, clean_db):
    with serve(_readme_receiver("whsec_placeholder")) as base:
        url = f"{base}/webhooks"
        endpoint = register(api.as_key(admin_key), url)
    with serve(_readme_receiver(endpoint["secret"])) as base:
        url = f"{base}/webhooks"
        admin = api.as_key(admin_key)
        admin.request("PATCH", f"/api/v1/webhook-endpoints/{endpoint['id']}", json={"url": url})
        code, outcome = _ping(stack_env, url)
        assert code == 0, outcome
        assert outcome["delivered"] and outcome["status_code"] == 204
        assert outcome["event_id"].startswith("evt_ping_")

        code, outcome = _ping(stack_env, url, "--secret", "whsec_not_the_one")
        assert code == 1 and outcome["status_code"] == 400

        rotated = admin.post(f"/api/v1/webhook-endpoints/{endpoint['id']}/rotate-secret")
        assert rotated.status_code == 200
        # The receiver still knows only the old secret: within the 24 h it still verifies.
        code, outcome = _ping(stack_env, url)
        assert code == 0 and outcome["delivered"]


def test_a_url_with_no_endpoint_needs_a_secret(stack_env, clean_db):
    done = subprocess.run([PAYMENTS, "webhooks", "test", "http://127.0.0.1:9/nothing"],
                          env=stack_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "register it first" in done.stderr
