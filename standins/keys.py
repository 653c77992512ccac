"""The provider doubles' keys, made once under RUN_DIR/doubles/, and the settings that
point our connectors at the doubles (PROVIDER_DOUBLES=1 in `make up`, and the tests)."""

from __future__ import annotations

from pathlib import Path

DOUBLE_ROUTES = "wechat=wechatpay,alipay=alipay"


def doubles_environment(run_dir: Path, public_base_url: str) -> dict[str, str]:
    """Every WECHATPAY_* / ALIPAY_* setting for the doubles at `public_base_url`, and the
    routing of both methods to them; keys are made on first use and kept."""
    from standins.alipay.keys import ensure_keys as alipay_keys
    from standins.wechatpay.keys import ensure_keys as wechatpay_keys

    env = {"PAYMENT_PROVIDERS": DOUBLE_ROUTES}
    env.update(wechatpay_keys(run_dir, public_base_url))
    env.update(alipay_keys(run_dir, public_base_url))
    return env
