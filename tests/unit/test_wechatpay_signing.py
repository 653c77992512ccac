"""WeChat Pay API v3 signatures: the exact strings signed, pinned against a fixed key,
and the SDK (wechatpayv3) as an oracle for the same rules."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from wechatpayv3 import utils as sdk

from adapters.providers.wechatpay.signing import (
    answer_message,
    authorization,
    decrypt_resource,
    request_message,
    sign,
    verify,
)
from tests.unit.wechatpay_support import APIV3_KEY, MCHID, MERCHANT_SERIAL, private_key

BODY = b'{"appid":"wxd678efh567hg6787","mchid":"1230000109"}'
TS, NONCE = "1554208460", "593BEC0C930BF1AFEB40B4A08C8FB242"
# RSA-SHA256 with PKCS#1 v1.5 is deterministic: the same key and message, the same bytes.
PINNED_REQUEST_SIGNATURE = (
    "alraJvvJu8EW4A+O/oR9dsMlbuEnij+XsxFoYFQnYecUh4+edtfwYDk230VLNEoCCQWfyZSWXEB7yk0w8DDU/Rjb"
    "U7crfxHR2pK6AIgaPYEA2+AQ+MIUTq0bI4Ze/O+ta+Yd06WCMvAe2lFRu1hEpl+9Ao7rsdtcrKMcrVI3E8Qg443j"
    "v4pLLApZkPKhiiN9PRZ1PrLQYQuA7+OAlcGqXnd4dsJdIo/pcuQs82Eohcc+2F4NFYuF73Ib402bU5fY7UU/cOoB"
    "fW0Eyh1XGR0QWA3w/PLG75jQOLL3k1GSeXv8xfu20YL8S1txrPLEmcSO3BFUoNElyDvSu/FVdn8fiA==")
PINNED_EMPTY_ANSWER_SIGNATURE = (
    "YX98mkQ7OCryDjHBhTBELBj4Z7t98HbZjrQB2YO7/dhIQ+albN+TI8p9Rd5jjww0I2uxN+/wTX90fNXHxC7akOS2"
    "VqdjLpKglKUJM20NS28KDlYUAqrTCQ4T/B7ls/tjVJxUPw7UpAtw993mFWgEeuJ5RzOAoKkaDSxsHkxijcmmJ0Oj"
    "f21yFGSD8vKCY6251UnwSKCJCYND9hYwrXP3GKDuKgM4t1PsCein/fxycoEpMZzSQ9gYv0eYnkwW6k045gHA/EDW"
    "BllVpjPxhbHsQrdtTGSlrtq0KOavxjmbSQkGuty15Ow3u2yNdpOMNr8l8xlVs8bvMxhiyeeq4dcR+w==")


def test_request_signing_string_is_five_lines_each_ending_in_newline():
    message = request_message("POST", "/v3/pay/transactions/native", TS, NONCE, BODY)
    assert message == (b"POST\n/v3/pay/transactions/native\n1554208460\n"
                       b"593BEC0C930BF1AFEB40B4A08C8FB242\n" + BODY + b"\n")
    assert request_message("GET", "/v3/pay/transactions/out-trade-no/P1?mchid=1", TS, NONCE,
                           b"") == (b"GET\n/v3/pay/transactions/out-trade-no/P1?mchid=1\n"
                                    b"1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n\n")


def test_request_signature_is_pinned_for_the_fixed_merchant_key():
    message = request_message("POST", "/v3/pay/transactions/native", TS, NONCE, BODY)
    assert sign(private_key("merchant"), message) == PINNED_REQUEST_SIGNATURE


def test_authorization_header_matches_the_sdk_for_the_same_inputs():
    key = private_key("merchant")
    ours = authorization(mchid=MCHID, serial_no=MERCHANT_SERIAL, private_key=key,
                         method="POST", url="/v3/pay/transactions/native", body=BODY,
                         timestamp=TS, nonce=NONCE)
    assert ours == (f'WECHATPAY2-SHA256-RSA2048 mchid="{MCHID}",nonce_str="{NONCE}",'
                    f'signature="{PINNED_REQUEST_SIGNATURE}",timestamp="{TS}",'
                    f'serial_no="{MERCHANT_SERIAL}"')
    # The SDK signs the same string the same way (its timestamp is "now", so compare
    # the signature over our timestamp through its rsa_sign).
    sdk_signature = sdk.rsa_sign(key, f"POST\n/v3/pay/transactions/native\n{TS}\n{NONCE}\n"
                                      f"{BODY.decode()}\n")
    assert sdk_signature == PINNED_REQUEST_SIGNATURE


def test_answer_signing_string_and_empty_body_of_a_204():
    assert answer_message("1722850421", "d824f2e086d3c1df967785d13fcd22ef", b"{}") == (
        b"1722850421\nd824f2e086d3c1df967785d13fcd22ef\n{}\n")
    # A 204 has no body: its last line is the newline alone.
    message = answer_message("1722850421", "d824f2e086d3c1df967785d13fcd22ef", b"")
    assert message == b"1722850421\nd824f2e086d3c1df967785d13fcd22ef\n\n"
    assert sign(private_key("wechatpay"), message) == PINNED_EMPTY_ANSWER_SIGNATURE


def test_verify_accepts_the_sdk_signature_and_refuses_anything_changed():
    key = private_key("wechatpay")
    signature = sdk.rsa_sign(key, "1722850421\nabc\n{\"a\":1}\n")
    public = key.public_key()
    assert verify(public, answer_message("1722850421", "abc", b'{"a":1}'), signature)
    assert not verify(public, answer_message("1722850421", "abc", b'{"a":2}'), signature)
    assert not verify(public, answer_message("1722850422", "abc", b'{"a":1}'), signature)
    assert not verify(public, answer_message("1722850421", "abc", b'{"a":1}'), "not base64!")
    other = private_key("merchant").public_key()
    assert not verify(other, answer_message("1722850421", "abc", b'{"a":1}'), signature)


def test_decrypt_resource_is_aes_256_gcm_with_nonce_and_associated_data():
    sealed = base64.b64encode(AESGCM(APIV3_KEY).encrypt(b"fdasflkjo23f", b'{"x":1}',
                                                        b"transaction")).decode()
    assert decrypt_resource(APIV3_KEY, nonce="fdasflkjo23f", associated_data="transaction",
                            ciphertext=sealed) == b'{"x":1}'
    # The SDK reads the same bytes.
    assert sdk.aes_decrypt("fdasflkjo23f", sealed, "transaction", APIV3_KEY.decode()) == (
        '{"x":1}')
    assert decrypt_resource(APIV3_KEY, nonce="fdasflkjo23f", associated_data="refund",
                            ciphertext=sealed) is None
    assert decrypt_resource(b"x" * 32, nonce="fdasflkjo23f", associated_data="transaction",
                            ciphertext=sealed) is None
    assert decrypt_resource(APIV3_KEY, nonce="fdasflkjo23f", associated_data="transaction",
                            ciphertext="%%%") is None
