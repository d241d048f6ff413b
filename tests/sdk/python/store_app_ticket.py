#!/usr/bin/env python3
"""A store app on exbind through the official Python SDK (lark-oapi), unchanged but for its
domain:

    an event endpoint served by lark.EventDispatcherHandler (encrypt key + verification
    token) -> the app's event_url points at it -> client.auth.v3.app_ticket.resend -> the
    dispatcher accepts the pushed app_ticket (decrypted, signature and token checked) ->
    client.auth.v3.app_access_token.create with that ticket (a-...) ->
    client.auth.v3.tenant_access_token.create (t-...);
    and the same dispatcher refuses the push replayed with a wrong signature.

Environment (all required):
    EXBIND_BASE_URL     origin of the server
    EXBIND_ADMIN_TOKEN  its admin token (to set the app's event_url)
    APP_ID, APP_SECRET  a store app installed in TENANT_KEY
    ENCRYPT_KEY, VERIFICATION_TOKEN  the app's event settings
    TENANT_KEY          a tenant the app is installed in

Exits 0 and prints one summary line on success; exits 1 naming the first mismatch otherwise.
"""

import importlib.metadata
import json
import os
import sys
import threading
import traceback
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import lark_oapi as lark
from lark_oapi.api.auth.v3 import (
    CreateAppAccessTokenRequest,
    CreateAppAccessTokenRequestBody,
    CreateTenantAccessTokenRequest,
    CreateTenantAccessTokenRequestBody,
    ResendAppTicketRequest,
    ResendAppTicketRequestBody,
)

SDK = f"lark-oapi {importlib.metadata.version('lark-oapi')}"


def fail(what, detail=""):
    print(f"{SDK}: FAIL: {what} {detail}", file=sys.stderr)
    sys.exit(1)


def check(ok, what, detail=""):
    if not ok:
        fail(what, detail)


def main():
    base = os.environ["EXBIND_BASE_URL"]
    admin = os.environ["EXBIND_ADMIN_TOKEN"]
    app_id, app_secret = os.environ["APP_ID"], os.environ["APP_SECRET"]
    encrypt_key, vt = os.environ["ENCRYPT_KEY"], os.environ["VERIFICATION_TOKEN"]
    tenant_key = os.environ["TENANT_KEY"]

    tickets = []
    got = threading.Event()
    pushes = []  # (headers, body, status the dispatcher answered)

    def on_ticket(ev: lark.CustomizedEvent):
        tickets.append(ev.event["app_ticket"])
        got.set()

    dispatcher = (
        lark.EventDispatcherHandler.builder(encrypt_key, vt)
        .register_p1_customized_event("app_ticket", on_ticket)
        .build()
    )

    class Events(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            req = lark.RawRequest()
            req.uri = self.path
            req.body = body
            req.headers = self.headers  # case-insensitive, as web frameworks hand them over
            resp = dispatcher.do(req)
            pushes.append((self.headers, body, resp.status_code))
            self.send_response(resp.status_code)
            self.end_headers()
            self.wfile.write(resp.content or b"")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Events)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    event_url = f"http://127.0.0.1:{server.server_address[1]}/events"

    patch = urllib.request.Request(
        f"{base}/_exbind/v1/apps/{app_id}",
        data=json.dumps({"event_url": event_url}).encode(),
        method="PATCH",
        headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(patch) as r:
        check(json.load(r)["code"] == 0, "PATCH event_url")

    client = (
        lark.Client.builder()
        .app_id(app_id)
        .app_secret(app_secret)
        .app_type(lark.AppType.ISV)
        .domain(base)
        .build()
    )
    resp = client.auth.v3.app_ticket.resend(
        ResendAppTicketRequest.builder()
        .request_body(
            ResendAppTicketRequestBody.builder().app_id(app_id).app_secret(app_secret).build()
        )
        .build()
    )
    check(resp.success(), "app_ticket.resend", f"{resp.code} {resp.msg}")
    check(got.wait(30), "no app_ticket reached the dispatcher", pushes)
    ticket = tickets[0]
    headers, body, status = pushes[-1]
    check(status == 200, f"the dispatcher answered {status}")
    check(b'"encrypt"' in body, "the push was not encrypted", body)

    resp = client.auth.v3.app_access_token.create(
        CreateAppAccessTokenRequest.builder()
        .request_body(
            CreateAppAccessTokenRequestBody.builder()
            .app_id(app_id)
            .app_secret(app_secret)
            .app_ticket(ticket)
            .build()
        )
        .build()
    )
    check(resp.success(), "app_access_token.create", f"{resp.code} {resp.msg}")
    app_token = json.loads(resp.raw.content)["app_access_token"]
    check(app_token.startswith("a-"), "app_access_token", app_token)

    resp = client.auth.v3.tenant_access_token.create(
        CreateTenantAccessTokenRequest.builder()
        .request_body(
            CreateTenantAccessTokenRequestBody.builder()
            .app_access_token(app_token)
            .tenant_key(tenant_key)
            .build()
        )
        .build()
    )
    check(resp.success(), "tenant_access_token.create", f"{resp.code} {resp.msg}")
    tenant_token = json.loads(resp.raw.content)["tenant_access_token"]
    check(tenant_token.startswith("t-"), "tenant_access_token", tenant_token)

    # The dispatcher does check: the same push replayed is accepted, with a wrong signature
    # refused.
    names = ["X-Lark-Request-Timestamp", "X-Lark-Request-Nonce", "X-Lark-Signature"]
    for signature, want in [(headers["X-Lark-Signature"], 200), ("0" * 64, 500)]:
        replay = lark.RawRequest()
        replay.uri = "/events"
        replay.body = body
        replay.headers = {n: headers[n] for n in names[:2]}
        replay.headers["X-Lark-Signature"] = signature
        status = dispatcher.do(replay).status_code
        check(status == want, f"replayed push answered {status}, expected {want}")

    server.shutdown()
    print(
        f"{SDK}: OK EventDispatcherHandler accepted the encrypted app_ticket; "
        "app_access_token a-..., tenant_access_token t-...; forged signature refused"
    )


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception:
        traceback.print_exc()
        sys.exit(1)
