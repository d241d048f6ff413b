#!/usr/bin/env python3
"""Drives exbind with the official Python SDK (lark-oapi), unchanged but for its domain.

Flow, through the SDK's typed methods and a user_access_token:
    create -> get -> delete -> get (expects 404 / 195103), with the sync methods and again
    with the async ones (acreate/aget/adelete),
then the tenant-token path through the generic ``client.request`` (expects 99991663,
after the SDK fetched a tenant token from /open-apis/auth/v3/tenant_access_token/internal).

Environment (all required):
    EXBIND_BASE_URL    origin of the server, e.g. http://127.0.0.1:8787 (no trailing slash)
    APP_ID, APP_SECRET a custom app installed in the tenant
    USER_ACCESS_TOKEN  a user token (u-...) of a super administrator, for APP_ID
    ADMIN_ACCOUNT      a registered Exchange admin account of the tenant
    EXCHANGE_ACCOUNT   an unbound Exchange account
    USER_OPEN_ID       open_id (as APP_ID sees it) of the user to bind

Exits 0 and prints one summary line on success; exits 1 naming the first mismatch otherwise.
"""

import asyncio
import base64
import os
import sys
import traceback

import lark_oapi as lark
from lark_oapi.api.calendar.v4 import (
    CreateExchangeBindingRequest,
    DeleteExchangeBindingRequest,
    ExchangeBinding,
    GetExchangeBindingRequest,
)
from lark_oapi.core.exception import ObtainAccessTokenException
from lark_oapi.core.token.manager import TokenManager

SDK = "python lark-oapi 1.7.5"
GET_URI = "/open-apis/calendar/v4/exchange_bindings/:exchange_binding_id"


class Mismatch(Exception):
    pass


def env(name):
    value = os.environ.get(name, "")
    if not value:
        raise Mismatch(f"environment variable {name} is not set")
    return value


def check(cond, what, resp=None):
    if not cond:
        raise Mismatch(what + ("" if resp is None else "\n    " + describe(resp)))


def describe(resp):
    raw = resp.raw
    body = raw.content.decode("utf-8", "replace") if raw is not None and raw.content is not None else None
    return (
        f"code={resp.code!r} msg={resp.msg!r} http={getattr(raw, 'status_code', None)!r} "
        f"headers={getattr(raw, 'headers', None)!r} body={body!r}"
    )


def user_option(token):
    # A fresh RequestOption per call: the SDK mutates the one it is given (adds Content-Type).
    return lark.RequestOption.builder().user_access_token(token).build()


def check_log_id(resp, step):
    log_id = resp.get_log_id()
    check(
        isinstance(log_id, str) and log_id != "",
        f"{step}: resp.get_log_id() is {log_id!r}: no 'X-Tt-Logid' response header (exact casing)",
        resp,
    )
    return log_id


def check_binding(data, step, want):
    check(data is not None, f"{step}: resp.data is None")
    for field, value in want.items():
        got = getattr(data, field)
        check(got == value, f"{step}: data.{field} is {got!r}, expected {value!r}")


def binding_flow(create, get, delete, p, user_token, want, expected_id, log_ids):
    """create -> get -> delete -> get through the given SDK methods; p prefixes step names."""
    admin, exchange, open_id = want["admin_account"], want["exchange_account"], want["user_id"]

    # create
    req = (
        CreateExchangeBindingRequest.builder()
        .user_id_type("open_id")
        .request_body(
            ExchangeBinding.builder().admin_account(admin).exchange_account(exchange).user_id(open_id).build()
        )
        .build()
    )
    resp = create(req, user_option(user_token))
    check(resp.success(), f"{p}create: not a success", resp)
    check(resp.raw.status_code == 200, f"{p}create: HTTP {resp.raw.status_code}, expected 200", resp)
    check_binding(resp.data, f"{p}create", dict(want, status="doing"))
    if log_ids:
        check_log_id(resp, f"{p}create")

    # get (the id goes on the wire as ...%3D)
    req = GetExchangeBindingRequest.builder().exchange_binding_id(expected_id).user_id_type("open_id").build()
    resp = get(req, user_option(user_token))
    check(resp.success(), f"{p}get: not a success", resp)
    check(resp.raw.status_code == 200, f"{p}get: HTTP {resp.raw.status_code}, expected 200", resp)
    check_binding(resp.data, f"{p}get", want)
    check(
        resp.data.status in ("doing", "cal_done", "timespan_done", "done"),
        f"{p}get: data.status is {resp.data.status!r}",
        resp,
    )
    if log_ids:
        check_log_id(resp, f"{p}get")

    # delete
    req = DeleteExchangeBindingRequest.builder().exchange_binding_id(expected_id).build()
    resp = delete(req, user_option(user_token))
    check(resp.success(), f"{p}delete: not a success", resp)
    check(resp.raw.status_code == 200, f"{p}delete: HTTP {resp.raw.status_code}, expected 200", resp)
    if log_ids:
        check_log_id(resp, f"{p}delete")

    # get again: gone
    req = GetExchangeBindingRequest.builder().exchange_binding_id(expected_id).user_id_type("open_id").build()
    resp = get(req, user_option(user_token))
    check(resp.code == 195103, f"{p}get after delete: expected code 195103", resp)
    check(not resp.success(), f"{p}get after delete: success() should be False", resp)
    check(resp.raw.status_code == 404, f"{p}get after delete: HTTP {resp.raw.status_code}, expected 404", resp)
    check(resp.data is None, f"{p}get after delete: data is {resp.data!r}, expected None", resp)
    if log_ids:
        check_log_id(resp, f"{p}get after delete")


def main():
    base_url = env("EXBIND_BASE_URL")
    app_id = env("APP_ID")
    app_secret = env("APP_SECRET")
    user_token = env("USER_ACCESS_TOKEN")
    admin = env("ADMIN_ACCOUNT")
    exchange = env("EXCHANGE_ACCOUNT")
    open_id = env("USER_OPEN_ID")

    expected_id = base64.b64encode(f"{admin} {exchange}".encode("utf-8")).decode("ascii")
    check(
        "=" in expected_id,
        f"test setup: binding id {expected_id!r} has no '=', so the SDK's %3D encoding would not be exercised",
    )

    client = (
        lark.Client.builder()
        .app_id(app_id)
        .app_secret(app_secret)
        .domain(base_url)
        .enable_set_token(True)
        .log_level(lark.LogLevel.WARNING)
        .build()
    )
    cal = client.calendar.v4.exchange_binding
    want = {
        "admin_account": admin,
        "exchange_account": exchange,
        "user_id": open_id,
        "exchange_binding_id": expected_id,
    }

    # Sync methods (requests), then the async ones (httpx: compact JSON, Content-Type without
    # charset, DELETE without Content-Length). The account is free again after each delete,
    # and a rebind with the same spelling gets the same id.
    binding_flow(cal.create, cal.get, cal.delete, "", user_token, want, expected_id, True)
    binding_flow(
        lambda req, opt: asyncio.run(cal.acreate(req, opt)),
        lambda req, opt: asyncio.run(cal.aget(req, opt)),
        lambda req, opt: asyncio.run(cal.adelete(req, opt)),
        "async ",
        user_token,
        want,
        expected_id,
        False,  # get_log_id() is always None with httpx (it lower-cases header names)
    )

    # Tenant token: only the generic client.request can send one to this user-only API.
    # The SDK first fetches it (POST .../tenant_access_token/internal, no Content-Type).
    cache_key = f"self_tenant_token:{app_id}"
    req = (
        lark.BaseRequest.builder()
        .http_method(lark.HttpMethod.GET)
        .uri(GET_URI)
        .token_types({lark.AccessTokenType.TENANT})
        .paths({"exchange_binding_id": expected_id})
        .queries([("user_id_type", "open_id")])
        .build()
    )
    option = lark.RequestOption.builder().build()
    try:
        resp = client.request(req, option)
    except ObtainAccessTokenException as e:
        raise Mismatch(f"tenant token: the SDK could not obtain a tenant token: code={e.code!r} msg={e.msg!r}")
    tenant_token = option.tenant_access_token
    check(
        isinstance(tenant_token, str) and tenant_token.startswith("t-"),
        f"tenant token: the SDK did not obtain a t- token (got {tenant_token!r})",
    )
    check(
        TokenManager.cache.get(cache_key) == tenant_token,  # fresh process: fetched just now
        "tenant token: the obtained token is not in the SDK's cache",
    )
    check(
        resp.code is not None,
        "tenant token: client.request did not parse the answer (it reads the body only when the "
        "response has a header named exactly 'Content-Type' starting with application/json)",
        resp,
    )
    check(resp.code == 99991663, "tenant token: expected code 99991663", resp)
    check(resp.raw.status_code == 400, f"tenant token: HTTP {resp.raw.status_code}, expected 400", resp)
    check_log_id(resp, "tenant token")

    print(
        f"{SDK}: OK create/get/delete/get(195103, 404), sync and async, id={expected_id} "
        f"(sent as %3D) + tenant token via client.request -> 99991663"
    )


if __name__ == "__main__":
    try:
        main()
    except Mismatch as e:
        print(f"{SDK}: FAIL: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception:  # any SDK exception (JSONDecodeError, NoAuthorizationException, ...)
        traceback.print_exc()
        print(f"{SDK}: FAIL: unexpected exception (see traceback above)", file=sys.stderr)
        sys.exit(1)
