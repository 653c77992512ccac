"""The README tells the truth: each of its shell blocks is run by a named test, and its
headings are not duplicated."""

from __future__ import annotations

import re

from config import PROJECT_ROOT
from tests.support.readme import README, sh_blocks

# A marker found in a block -> the test(s) that run its commands.
RUN_BY = {
    "make up     #": ["tests/e2e/test_make_up.py"],  # `make test` is what .ci/run runs
    "export ADMIN_KEY=": ["tests/e2e/test_make_up.py"],
    "Sandbox-Signature: t=$t": ["tests/e2e/test_make_up.py"],
    "payments keys create": ["tests/integration/test_cli.py", "tests/integration/test_sweep_cli.py",
                             "tests/integration/test_callbacks_endpoint.py",
                             "tests/e2e/test_make_up.py",
                             "tests/integration/test_wallet_journey.py"],  # wallets verify
    "make bench": ["tests/e2e/test_bench_smoke.py"],
    "PROVIDER_DOUBLES=1 make up": ["tests/e2e/test_make_up.py"],
}
# Blocks known to run by no test yet: each one is a gap to close, named here so that a new
# block cannot slip in unnoticed.
NOT_YET_RUN: dict[str, str] = {}


def test_every_shell_block_is_run_by_a_named_test():
    for block in sh_blocks():
        if any(gap in block for gap in NOT_YET_RUN):
            continue
        markers = [m for m in RUN_BY if m in block]
        assert len(markers) == 1, f"no test is named for this README block:\n{block}"
        for test_file in RUN_BY[markers[0]]:
            assert (PROJECT_ROOT / test_file).exists(), test_file
    assert len(sh_blocks()) == len(RUN_BY) + len(NOT_YET_RUN)


def test_the_blocks_run_from_the_make_up_test_are_the_ones_it_reads():
    source = (PROJECT_ROOT / "tests/e2e/test_make_up.py").read_text()
    assert 'sh_block("export ADMIN_KEY=")' in source
    assert 'sh_block("Sandbox-Signature")' in source


def test_no_heading_appears_twice():
    headings = re.findall(r"^#+ .*$", README.read_text(), re.M)
    assert len(headings) == len(set(headings)), sorted(h for h in headings
                                                        if headings.count(h) > 1)


def test_the_callback_example_pays_the_demo_payment_in_full():
    [block] = [b for b in sh_blocks() if "Sandbox-Signature: t=$t" in b]
    assert '"amount":"88.00"' in block and "PAYMENT=1 " in block
