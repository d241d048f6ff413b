#!/usr/bin/env python3
"""Checks exbind's OpenAPI document against a live server (driven by crates/exbind/tests/openapi.rs).

1. openapi-spec-validator validates the document as OpenAPI 3.1, and a lint checks what the
   contract asks of every operation (default error response, X-Tt-Logid, security, ...).
2. schemathesis runs against the live server with the checks not_a_server_error,
   status_code_conformance, content_type_conformance, response_schema_conformance and
   response_headers_conformance, a bounded number of examples per operation, in stages so
   that destructive control-plane calls cannot hide the Feishu routes from the test:
     read     the Feishu routes, the token endpoints, health and the read-only control plane
     write    the control-plane writes (seed, users, apps, admins, tokens, scenarios, sync),
              on two bindings made first so that force and advance can succeed
     faults   fault rules (a rule may make later Feishu calls answer 5xx, so they come late)
              and wiping a tenant's bindings
     reset    the reset, then reads of the empty emulator
   The control plane is called with the admin token, the Feishu routes with a user token
   (schemathesis picks the token by the operation's security scheme).

Usage: check.py --spec FILE --base-url URL --admin-token T --user-token U
Environment: EXBIND_OPENAPI_EXAMPLES (examples per operation, default 20),
             EXBIND_OPENAPI_SEED (schemathesis seed, default 1; "random" for none).
Exit status 0 when everything passed; the output says what failed otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from openapi_spec_validator import OpenAPIV31SpecValidator

HERE = Path(__file__).resolve().parent

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)

# Every route the server serves (crates/exbind-server/src/http), as (method, OpenAPI path).
FEISHU_BINDINGS = {
    ("post", "/open-apis/calendar/v4/exchange_bindings"),
    ("get", "/open-apis/calendar/v4/exchange_bindings/{exchange_binding_id}"),
    ("delete", "/open-apis/calendar/v4/exchange_bindings/{exchange_binding_id}"),
}
FEISHU_TOKENS = {
    ("post", "/open-apis/auth/v3/tenant_access_token/internal"),
    ("post", "/open-apis/auth/v3/app_access_token/internal"),
    ("post", "/open-apis/auth/v3/app_access_token"),
    ("post", "/open-apis/auth/v3/tenant_access_token"),
    ("post", "/open-apis/auth/v3/app_ticket/resend"),
}
# The login flows (oauth.md). Their errors are HTML pages (authorize) or flat (the v2 token
# endpoint), not the envelope; they are linted, not fuzzed (tests/authorize.rs,
# tests/oauth_token.rs and tests/oauth_v1.rs drive them).
FEISHU_LOGIN_PLAIN = {
    ("get", "/open-apis/authen/v1/authorize"),
    ("post", "/open-apis/authen/v1/authorize"),
    ("get", "/open-apis/authen/v1/index"),
    ("post", "/open-apis/authen/v2/oauth/token"),
}
FEISHU_LOGIN_APP = {
    ("post", "/open-apis/authen/v1/oidc/access_token"),
    ("post", "/open-apis/authen/v1/oidc/refresh_access_token"),
    ("post", "/open-apis/authen/v1/access_token"),
    ("post", "/open-apis/authen/v1/refresh_access_token"),
}
FEISHU_LOGIN_USER = {("get", "/open-apis/authen/v1/user_info")}
V1 = "/_exbind/v1"
CONTROL = {
    ("post", f"{V1}/seed"),
    ("get", f"{V1}/tenants"),
    ("get", f"{V1}/tenants/{{tenant_key}}"),
    ("get", f"{V1}/tenants/{{tenant_key}}/users"),
    ("get", f"{V1}/tenants/{{tenant_key}}/users/{{user_id}}"),
    ("patch", f"{V1}/tenants/{{tenant_key}}/users/{{user_id}}"),
    ("patch", f"{V1}/tenants/{{tenant_key}}/exchange_admins/{{account}}"),
    ("get", f"{V1}/tenants/{{tenant_key}}/bindings"),
    ("post", f"{V1}/tenants/{{tenant_key}}/bindings"),
    ("delete", f"{V1}/tenants/{{tenant_key}}/bindings"),
    ("delete", f"{V1}/tenants/{{tenant_key}}/bindings/{{exchange_binding_id}}"),
    ("patch", f"{V1}/tenants/{{tenant_key}}/bindings/{{exchange_binding_id}}"),
    ("post", f"{V1}/tenants/{{tenant_key}}/bindings/{{exchange_binding_id}}/advance"),
    ("post", f"{V1}/tenants/{{tenant_key}}/sync/complete"),
    ("put", f"{V1}/tenants/{{tenant_key}}/exchange_accounts/{{account}}/scenario"),
    ("delete", f"{V1}/tenants/{{tenant_key}}/exchange_accounts/{{account}}/scenario"),
    ("get", f"{V1}/apps"),
    ("get", f"{V1}/apps/{{app_id}}"),
    ("patch", f"{V1}/apps/{{app_id}}"),
    ("post", f"{V1}/user_access_tokens"),
    ("post", f"{V1}/user_access_tokens/revoke"),
    ("delete", f"{V1}/tenants/{{tenant_key}}/users/{{user_id}}"),
    ("post", f"{V1}/oauth/codes"),
    ("post", f"{V1}/faults"),
    ("get", f"{V1}/faults"),
    ("delete", f"{V1}/faults"),
    ("delete", f"{V1}/faults/{{id}}"),
    ("get", f"{V1}/requests"),
    ("get", f"{V1}/requests/{{log_id}}"),
    ("post", f"{V1}/reset"),
    # A stream that does not end, so no stage below runs it; tests/events.rs drives it.
    ("get", f"{V1}/events"),
}
OPEN = {
    ("get", "/_exbind/healthz"),
    ("get", "/_exbind/readyz"),
    ("get", "/_exbind/metrics"),
    ("get", "/_exbind/openapi.json"),
    ("get", "/_exbind/assets/{name}"),
}
EXPECTED = (
    FEISHU_BINDINGS | FEISHU_TOKENS | FEISHU_LOGIN_PLAIN | FEISHU_LOGIN_APP | FEISHU_LOGIN_USER | CONTROL | OPEN
)

# (stage, phases, operationIds). Stateful testing follows the document's links, so it runs
# only where a stage holds both ends of one.
ALL_PHASES = "examples,coverage,fuzzing,stateful"
NO_LINKS = "examples,coverage,fuzzing"
STAGES = [
    (
        "read",
        ALL_PHASES,
        [
            "createExchangeBinding",
            "getExchangeBinding",
            "deleteExchangeBinding",
            "tenantAccessTokenInternal",
            "appAccessTokenInternal",
            "storeAppAccessToken",
            "storeTenantAccessToken",
            "resendAppTicket",
            "healthz",
            "readyz",
            "metrics",
            "openapi",
            "asset",
            "listTenants",
            "getTenant",
            "getUser",
            "listUsers",
            "getApp",
            "listApps",
            "listBindings",
            "listFaults",
            "listRequests",
            "getRequest",
        ],
    ),
    (
        "write",
        ALL_PHASES,
        [
            "applySeed",
            "createTenantBinding",
            "patchUser",
            "patchExchangeAdmin",
            "listBindings",
            "forceBindingStatus",
            "advanceBinding",
            "completeSync",
            "putScenario",
            "deleteScenario",
            "patchApp",
            "mintUserAccessToken",
            "revokeUserAccessToken",
            "issueOAuthCode",
        ],
    ),
    ("faults", ALL_PHASES, ["addFault", "listFaults", "deleteFault", "clearFaults", "deleteTenantBinding", "deleteTenantBindings"]),
    # Deleting users would take the callers of the stages before away.
    ("reset", NO_LINKS, ["reset", "deleteUser", "listTenants", "listRequests", "listFaults"]),
]

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


# --- 1. The document ------------------------------------------------------------------------


def resolve(doc: dict, node):
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"external $ref {ref}"
        node = doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refers_to(doc: dict, schema, name: str) -> bool:
    """Whether `schema` is, or is an allOf of, components/schemas/<name>."""
    target = f"#/components/schemas/{name}"
    if not isinstance(schema, dict):
        return False
    if schema.get("$ref") == target:
        return True
    return any(refers_to(doc, s, name) for s in schema.get("allOf", []))


def lint(doc: dict) -> list[str]:
    problems: list[str] = []
    ops = {}
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                ops[(method, path)] = op
    missing = EXPECTED - ops.keys()
    extra = ops.keys() - EXPECTED
    problems += [f"route not documented: {m.upper()} {p}" for m, p in sorted(missing)]
    problems += [f"documented route the server does not serve: {m.upper()} {p}" for m, p in sorted(extra)]

    ids = [op.get("operationId") for op in ops.values()]
    if len(ids) != len(set(ids)):
        problems.append("operationIds are not unique")

    for (method, path), op in sorted(ops.items()):
        where = f"{method.upper()} {path}"
        for key in ("operationId", "summary", "description"):
            if not op.get(key):
                problems.append(f"{where}: no {key}")
        if (method, path) in FEISHU_BINDINGS | FEISHU_LOGIN_USER:
            want_sec = [{"UserAccessToken": []}]
        elif (method, path) in FEISHU_LOGIN_APP:
            want_sec = [{"AppAccessToken": []}]
        elif (method, path) in CONTROL:
            want_sec = [{"AdminToken": []}]
        else:
            want_sec = []
        if op.get("security") != want_sec:
            problems.append(f"{where}: security should be {want_sec}, is {op.get('security')}")
        responses = op.get("responses", {})
        if "default" not in responses:
            problems.append(f"{where}: no default response")
        if (method, path) in FEISHU_BINDINGS:
            for status in ("200", "400", "403", "404", "429", "500"):
                if status not in responses:
                    problems.append(f"{where}: HTTP {status} not documented")
            r429 = resolve(doc, responses.get("429", {}))
            for h in ("X-Ogw-Ratelimit-Limit", "X-Ogw-Ratelimit-Reset", "Retry-After"):
                if h not in r429.get("headers", {}):
                    problems.append(f"{where}: 429 lacks the {h} header")
        if (method, path) in CONTROL and "401" not in responses:
            problems.append(f"{where}: HTTP 401 (admin token) not documented")
        for status, resp in responses.items():
            resp = resolve(doc, resp)
            if "X-Tt-Logid" not in resp.get("headers", {}):
                problems.append(f"{where} {status}: no X-Tt-Logid header")
            plain = (method, path) in FEISHU_LOGIN_PLAIN and status != "default"
            if not plain and (status == "default" or int(status) >= 400):
                schema = resp.get("content", {}).get("application/json", {}).get("schema")
                if not refers_to(doc, schema, "ErrorEnvelope"):
                    problems.append(f"{where} {status}: not the error envelope")

    binding = doc.get("components", {}).get("schemas", {}).get("Binding", {})
    for key in ("admin_account", "exchange_account"):
        if key not in binding.get("properties", {}) or key in binding.get("required", []):
            problems.append(f"Binding.{key} should be documented and optional")
    detail = doc.get("components", {}).get("schemas", {}).get("ErrorDetail", {})
    for key in ("log_id", "message", "field_violations", "permission_violations", "helps"):
        if key not in detail.get("properties", {}):
            problems.append(f"ErrorDetail lacks {key}")
    return problems


def check_document(doc: dict) -> bool:
    ok = True
    errors = list(OpenAPIV31SpecValidator(doc).iter_errors())
    for e in errors:
        print(f"openapi-spec-validator: {e.message} at {'/'.join(map(str, e.absolute_path))}")
    if errors:
        ok = False
    else:
        print("openapi-spec-validator: the document is valid OpenAPI 3.1")
    problems = lint(doc)
    for p in problems:
        print(f"lint: {p}")
    if problems:
        ok = False
    else:
        n = sum(1 for item in doc["paths"].values() for m in item if m in HTTP_METHODS)
        print(f"lint: {n} operations, every route of the server documented as the contract asks")
    return ok


# --- 2. Against the live server ---------------------------------------------------------------


def call(base: str, method: str, path: str, token: str, body=None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def prepare_bindings(base: str, user_token: str) -> None:
    """Bindings for the control-plane stage to force and advance (by the documented examples)."""
    pairs = [
        ("email_admin_example@outlook.com", "email_account_example@outlook.com", "alice"),
        ("exadmin@acme.example", "boss@exchange.example", "boss"),
    ]
    for admin, exchange, user in pairs:
        r = call(
            base,
            "POST",
            "/open-apis/calendar/v4/exchange_bindings?user_id_type=user_id",
            user_token,
            {"admin_account": admin, "exchange_account": exchange, "user_id": user},
        )
        print(f"prepare: bind {exchange} -> {user}: code {r.get('code')} {r.get('msg')}")


def run_schemathesis(stage: str, phases: str, op_ids: list[str], args, workdir: Path) -> bool:
    exe = Path(sys.executable).parent / "schemathesis"
    cmd = [
        str(exe),
        "--config-file",
        str(workdir / "schemathesis.toml"),
        "run",
        args.spec,
        "--url",
        args.base_url,
        "--checks",
        CHECKS,
        "--phases",
        phases,
        "--max-examples",
        str(args.examples),
        "--include-operation-id-regex",
        "^(" + "|".join(op_ids) + ")$",
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--generation-database",
        "none",
        "--warnings",
        "off",
        "--no-color",
    ]
    if args.seed != "random":
        cmd += ["--seed", args.seed]
    env = dict(os.environ)
    env["EXBIND_ADMIN_TOKEN"] = args.admin_token
    env["EXBIND_USER_TOKEN"] = args.user_token
    env["SCHEMATHESIS_HOOKS"] = "hooks"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    print(f"\n=== schemathesis, stage {stage}: {', '.join(op_ids)}", flush=True)
    started = time.monotonic()
    st = subprocess.run(cmd, cwd=workdir, env=env)
    print(f"=== stage {stage}: exit {st.returncode} in {time.monotonic() - started:.1f}s", flush=True)
    return st.returncode == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", required=True, help="the document as served by /_exbind/openapi.json")
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--admin-token", required=True)
    ap.add_argument("--user-token", required=True, help="a u- token of a tenant super administrator")
    ap.add_argument("--examples", type=int, default=int(os.environ.get("EXBIND_OPENAPI_EXAMPLES", "20")))
    ap.add_argument("--seed", default=os.environ.get("EXBIND_OPENAPI_SEED", "1"))
    args = ap.parse_args()
    args.base_url = args.base_url.rstrip("/")

    with open(args.spec, encoding="utf-8") as f:
        doc = json.load(f)
    if not check_document(doc):
        print("FAILED: the document does not validate")
        return 1

    failed = []
    with tempfile.TemporaryDirectory(prefix="exbind-openapi-") as tmp:
        workdir = Path(tmp)
        (workdir / "schemathesis.toml").write_text(
            "[auth.openapi.AdminToken]\n"
            'bearer = "${EXBIND_ADMIN_TOKEN}"\n'
            "[auth.openapi.UserAccessToken]\n"
            'bearer = "${EXBIND_USER_TOKEN}"\n'
        )
        for stage, phases, op_ids in STAGES:
            if stage == "write":
                prepare_bindings(args.base_url, args.user_token)
            if not run_schemathesis(stage, phases, op_ids, args, workdir):
                failed.append(stage)
    if failed:
        print(f"FAILED: schemathesis found problems in stage(s) {', '.join(failed)}")
        return 1
    print("openapi check: passed (openapi-spec-validator and schemathesis)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
