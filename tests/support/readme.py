"""The README's shell blocks, as tests run them against a live stack."""

from __future__ import annotations

import re
import subprocess

from config import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
_SH_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)


def sh_blocks() -> list[str]:
    return _SH_BLOCK.findall(README.read_text())


def sh_block(marker: str) -> str:
    """The one ```sh block of the README that contains `marker`."""
    [block] = [b for b in sh_blocks() if marker in b]
    return block


def run_sh(script: str, *, base_url: str, timeout: float = 120,
           replace: dict[str, str] | None = None) -> str:
    """The block as a reader would paste it, against `base_url` instead of :8000.
    `replace`: the placeholders a reader fills in (a key from the banner)."""
    script = script.replace("http://127.0.0.1:8000", base_url)
    for old, new in (replace or {}).items():
        assert old in script, old
        script = script.replace(old, new)
    done = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout
