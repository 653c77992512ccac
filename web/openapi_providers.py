"""The real providers' callback routes in our OpenAPI document (web/openapi.py merges
them), tagged "providers". Each speaks its provider's own protocol (DESIGN.md §6b): no
API key, the provider's signature authenticates, and every answer is in its format."""

from __future__ import annotations

from web.openapi_schemas import Schema, string

TAG = "providers"
WECHATPAY_FAIL: Schema = {
    "type": "object", "required": ["code", "message"],
    "properties": {"code": string(enum=["FAIL"]), "message": string()}}


def _header(name: str, description: str) -> Schema:
    return {"name": name, "in": "header", "required": True, "description": description,
            "schema": string()}


def _answers(content_type: str, schema: Schema, refused: dict[int, str]) -> Schema:
    return {str(status): {"description": text, "content": {content_type: {"schema": schema}}}
            for status, text in sorted(refused.items())}


PROVIDER_PATHS: dict[str, dict[str, Schema]] = {
    "/callbacks/wechatpay": {"post": {
        "operationId": "receiveWechatPayNotification",
        "summary": "WeChat Pay API v3 notification (payments and refunds)",
        "tags": [TAG], "security": [],
        "description": (
            "Verified with RSA-SHA256 over `Wechatpay-Timestamp\\nWechatpay-Nonce\\nbody\\n` "
            "and the key `Wechatpay-Serial` names (WeChat Pay's public key, or a platform "
            "certificate from WECHATPAY_PLATFORM_CERTS_DIR); its `resource` is decrypted "
            "with AEAD_AES_256_GCM and the APIv3 key. TRANSACTION.SUCCESS, REFUND.SUCCESS, "
            "REFUND.CLOSED and REFUND.ABNORMAL are applied; stored before the answer."),
        "parameters": [
            _header("Wechatpay-Signature", "Base64 RSA-SHA256 signature"),
            _header("Wechatpay-Serial", "The signing key's id (PUB_KEY_ID_...) or a "
                                        "platform certificate's serial"),
            _header("Wechatpay-Timestamp", "Unix seconds, within "
                                           "CALLBACK_TOLERANCE_SECONDS of now"),
            _header("Wechatpay-Nonce", "Random string")],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"type": "object", "required": ["id", "event_type", "resource"]}}}},
        "responses": {
            "204": {"description": "Stored (or stored before): WeChat Pay stops sending"},
            **_answers("application/json", WECHATPAY_FAIL, {
                400: "Authentic but unreadable", 401: "Signature, key, timestamp or probe "
                "refused", 413: "Body over 64 KiB",
                503: "Not stored (database unavailable): WeChat Pay sends it again"})}}},
    "/callbacks/alipay": {"post": {
        "operationId": "receiveAlipayNotification",
        "summary": "Alipay asynchronous notification (trade status)",
        "tags": [TAG], "security": [],
        "description": (
            "Form-encoded. Verified with RSA2 (SHA256withRSA) over the sorted `k=v&...` of "
            "every parameter but `sign` and `sign_type`, with ALIPAY_PUBLIC_KEY_FILE; "
            "`app_id` must be ALIPAY_APP_ID. TRADE_SUCCESS / TRADE_FINISHED pay, "
            "TRADE_CLOSED fails (never a success); stored before the answer."),
        "requestBody": {"required": True, "content": {
            "application/x-www-form-urlencoded": {"schema": {
                "type": "object", "required": ["notify_id", "app_id", "sign"]}}}},
        "responses": {
            "200": {"description": "Stored (or stored before): the body is `success`",
                    "content": {"text/plain": {"schema": string(enum=["success"])}}},
            **_answers("text/plain", string(enum=["fail"]), {
                400: "Authentic but unreadable", 401: "Signature or app_id refused",
                413: "Body over 64 KiB",
                503: "Not stored (database unavailable): Alipay sends it again"})}}},
}
