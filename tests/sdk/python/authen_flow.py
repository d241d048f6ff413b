#!/usr/bin/env python3
"""Drives exbind's login routes with the official Python SDK (lark-oapi), unchanged but for
its domain: the SDK's own ``client.authen.v1`` calls.

Flow: oidc_access_token (code -> u-/ur- tokens; the SDK fetches the app_access_token from
/open-apis/auth/v3/app_access_token/internal itself) -> oidc_refresh_access_token (a new
pair) -> user_info with the new token (fields by scope) -> the spent refresh token again
(20073) -> the code again (20065); then the older access_token / refresh_access_token routes,
whose data also carries the user info.

Environment (all required):
    EXBIND_BASE_URL    origin of the server (no trailing slash)
    APP_ID, APP_SECRET a custom app with contact:user.email:readonly, without
                       contact:user.employee_id:readonly
    CODE_OIDC, CODE_OLD two codes for the same user of APP_ID
    USER_OPEN_ID       that user's open_id as APP_ID sees it
    USER_EMAIL         that user's email
    USER_NAME          that user's name

Exits 0 and prints one summary line on success; exits 1 naming the first mismatch otherwise.
"""

import os
import sys
import traceback

import lark_oapi as lark
from lark_oapi.api.authen.v1 import (
    CreateAccessTokenRequest,
    CreateAccessTokenRequestBody,
    CreateOidcAccessTokenRequest,
    CreateOidcAccessTokenRequestBody,
    CreateOidcRefreshAccessTokenRequest,
    CreateOidcRefreshAccessTokenRequestBody,
    CreateRefreshAccessTokenRequest,
    CreateRefreshAccessTokenRequestBody,
    GetUserInfoRequest,
)

SDK = "python lark-oapi 1.7.5"


class Mismatch(Exception):
    pass


def env(name):
    value = os.environ.get(name, "")
    if not value:
        raise Mismatch(f"environment variable {name} is not set")
    return value


def describe(resp):
    raw = resp.raw
    body = raw.content.decode("utf-8", "replace") if raw is not None and raw.content is not None else None
    return f"code={resp.code!r} msg={resp.msg!r} http={getattr(raw, 'status_code', None)!r} body={body!r}"


def check(cond, what, resp=None):
    if not cond:
        raise Mismatch(what + ("" if resp is None else "\n    " + describe(resp)))


def oidc_exchange(client, code):
    body = CreateOidcAccessTokenRequestBody.builder().grant_type("authorization_code").code(code).build()
    return client.authen.v1.oidc_access_token.create(CreateOidcAccessTokenRequest.builder().request_body(body).build())


def oidc_refresh(client, refresh_token):
    body = (
        CreateOidcRefreshAccessTokenRequestBody.builder()
        .grant_type("refresh_token")
        .refresh_token(refresh_token)
        .build()
    )
    return client.authen.v1.oidc_refresh_access_token.create(
        CreateOidcRefreshAccessTokenRequest.builder().request_body(body).build()
    )


def check_tokens(resp, step):
    check(resp.success(), f"{step}: not a success", resp)
    d = resp.data
    check(d.access_token.startswith("u-"), f"{step}: access_token {d.access_token!r} is not u-…", resp)
    check(d.refresh_token.startswith("ur-"), f"{step}: refresh_token {d.refresh_token!r} is not ur-…", resp)
    check(d.token_type == "Bearer", f"{step}: token_type {d.token_type!r}", resp)
    check(isinstance(d.expires_in, int) and d.expires_in > 0, f"{step}: expires_in {d.expires_in!r}", resp)
    check(isinstance(d.refresh_expires_in, int) and d.refresh_expires_in > 0, f"{step}: refresh_expires_in", resp)
    return d


def main():
    base = env("EXBIND_BASE_URL")
    client = (
        lark.Client.builder()
        .app_id(env("APP_ID"))
        .app_secret(env("APP_SECRET"))
        .domain(base)
        .enable_set_token(True)
        .build()
    )
    open_id, email, name = env("USER_OPEN_ID"), env("USER_EMAIL"), env("USER_NAME")
    code = env("CODE_OIDC")

    first = check_tokens(oidc_exchange(client, code), "oidc_access_token")
    check("contact:user.email:readonly" in first.scope.split(" "), f"oidc_access_token: scope {first.scope!r}")
    second = check_tokens(oidc_refresh(client, first.refresh_token), "oidc_refresh_access_token")
    check(second.refresh_token != first.refresh_token, "oidc_refresh_access_token: the same refresh token again")

    info = client.authen.v1.user_info.get(
        GetUserInfoRequest.builder().build(),
        lark.RequestOption.builder().user_access_token(second.access_token).build(),
    )
    check(info.success(), "user_info: not a success", info)
    u = info.data
    check(u.open_id == open_id, f"user_info: open_id {u.open_id!r}, expected {open_id!r}", info)
    check(u.name == name, f"user_info: name {u.name!r}", info)
    check(u.email == email, f"user_info: email {u.email!r} (the app holds the email scope)", info)
    check(u.union_id and u.union_id.startswith("on_"), f"user_info: union_id {u.union_id!r}", info)
    check(u.user_id is None, f"user_info: user_id {u.user_id!r} without contact:user.employee_id:readonly", info)
    check(u.mobile is None, f"user_info: mobile {u.mobile!r} without contact:user.phone:readonly", info)

    again = oidc_refresh(client, first.refresh_token)
    check(again.code == 20073, "oidc_refresh_access_token with a spent refresh token: expected 20073", again)
    check(again.raw.status_code == 400, "a spent refresh token: HTTP 400", again)
    reused = oidc_exchange(client, code)
    check(reused.code == 20065, "oidc_access_token with a used code: expected 20065", reused)

    body = CreateAccessTokenRequestBody.builder().grant_type("authorization_code").code(env("CODE_OLD")).build()
    old = client.authen.v1.access_token.create(CreateAccessTokenRequest.builder().request_body(body).build())
    d = check_tokens(old, "access_token")
    check(d.open_id == open_id and d.name == name, f"access_token: user info {d.open_id!r} {d.name!r}", old)
    body = (
        CreateRefreshAccessTokenRequestBody.builder()
        .grant_type("refresh_token")
        .refresh_token(d.refresh_token)
        .build()
    )
    r = client.authen.v1.refresh_access_token.create(CreateRefreshAccessTokenRequest.builder().request_body(body).build())
    d = check_tokens(r, "refresh_access_token")
    check(d.email == email, f"refresh_access_token: email {d.email!r}", r)

    print(
        f"{SDK}: OK oidc_access_token, oidc_refresh_access_token, user_info (fields by scope), "
        f"spent refresh token -> 20073, used code -> 20065, access_token, refresh_access_token"
    )


if __name__ == "__main__":
    try:
        main()
    except Mismatch as e:
        print(f"{SDK}: FAIL: {e}", file=sys.stderr)
        sys.exit(1)
    except Exception:
        traceback.print_exc()
        print(f"{SDK}: FAIL: unexpected exception (see traceback above)", file=sys.stderr)
        sys.exit(1)
