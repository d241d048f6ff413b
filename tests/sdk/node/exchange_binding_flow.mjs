// Drives exbind with the official Node SDK (@larksuiteoapi/node-sdk), unchanged but for its
// domain.
//
// Flow, through client.calendar.v4.exchangeBinding and lark.withUserAccessToken:
//     create -> get -> delete -> get (expects an AxiosError: 404 / 195103)
// then one get WITHOUT withUserAccessToken: the SDK fetches a tenant token from
// /open-apis/auth/v3/tenant_access_token/internal, sends it, and gets 400 / 99991663.
//
// Environment (all required):
//     EXBIND_BASE_URL    origin of the server, e.g. http://127.0.0.1:8787 (no trailing slash)
//     APP_ID, APP_SECRET a custom app installed in the tenant
//     USER_ACCESS_TOKEN  a user token (u-...) of a super administrator, for APP_ID
//     ADMIN_ACCOUNT      a registered Exchange admin account of the tenant
//     EXCHANGE_ACCOUNT   an unbound Exchange account
//     USER_OPEN_ID       open_id (as APP_ID sees it) of the user to bind
//
// Exits 0 and prints one summary line on success; exits 1 naming the first mismatch otherwise.

import lark from '@larksuiteoapi/node-sdk';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const SDK = `node @larksuiteoapi/node-sdk ${require('@larksuiteoapi/node-sdk/package.json').version}`;
const TOKEN_PATH = '/open-apis/auth/v3/tenant_access_token/internal';

class Mismatch extends Error {}

function env(name) {
  const v = process.env[name];
  if (!v) throw new Mismatch(`environment variable ${name} is not set`);
  return v;
}

function check(cond, what, detail) {
  if (!cond) {
    throw new Mismatch(detail === undefined ? what : `${what}\n    ${JSON.stringify(detail)}`);
  }
}

// What the SDK puts on the wire, observed (not changed) through an axios interceptor on the
// SDK's own HTTP instance.
const sent = [];
lark.defaultHttpInstance.interceptors.request.use((config) => {
  const h = config.headers || {};
  const auth = typeof h.get === 'function' ? h.get('Authorization') : h.Authorization;
  sent.push({ method: String(config.method).toUpperCase(), url: config.url, authorization: auth });
  return config;
});

// The SDK's own log (it logs every rejected call); shown only when the flow fails.
const sdkLog = [];
const bufferingLogger = Object.fromEntries(
  ['error', 'warn', 'info', 'debug', 'trace'].map((level) => [
    level,
    (...msg) => sdkLog.push(`[sdk ${level}] ${JSON.stringify(msg)}`),
  ]),
);

// The answer of a call that must reject with an AxiosError (non-2xx).
async function rejection(promise, step) {
  let value;
  try {
    value = await promise;
  } catch (e) {
    check(e && e.isAxiosError, `${step}: rejected with a non-Axios error: ${e && e.stack}`);
    check(e.response, `${step}: AxiosError without a response: ${e.message}`);
    return e.response;
  }
  throw new Mismatch(`${step}: expected a non-2xx answer (AxiosError), the call resolved with ${JSON.stringify(value)}`);
}

// A call that must resolve; an AxiosError is reported with its status and body.
async function success(promise, step) {
  let body;
  try {
    body = await promise;
  } catch (e) {
    const r = e && e.response;
    throw new Mismatch(
      r ? `${step}: HTTP ${r.status} ${JSON.stringify(r.data)}` : `${step}: ${e && e.stack}`,
    );
  }
  check(body && typeof body === 'object', `${step}: answer is not a JSON object`, body);
  check(body.code === 0, `${step}: expected code 0`, body);
  return body;
}

function checkBinding(body, step, want) {
  const data = body.data;
  check(data && typeof data === 'object', `${step}: no data`, body);
  for (const [k, v] of Object.entries(want)) {
    check(data[k] === v, `${step}: data.${k} is ${JSON.stringify(data[k])}, expected ${JSON.stringify(v)}`, body);
  }
}

async function main() {
  const baseUrl = env('EXBIND_BASE_URL');
  const appId = env('APP_ID');
  const appSecret = env('APP_SECRET');
  const userToken = env('USER_ACCESS_TOKEN');
  const admin = env('ADMIN_ACCOUNT');
  const exchange = env('EXCHANGE_ACCOUNT');
  const openId = env('USER_OPEN_ID');

  const expectedId = Buffer.from(`${admin} ${exchange}`, 'utf8').toString('base64');
  check(expectedId.includes('='), `test setup: binding id ${expectedId} has no '='`);
  check(
    !expectedId.includes('/') && !expectedId.includes('+'),
    `test setup: binding id ${expectedId} has '/' or '+', which this SDK sends unencoded`,
  );

  const client = new lark.Client({
    appId,
    appSecret,
    domain: baseUrl,
    logger: bufferingLogger,
    loggerLevel: lark.LoggerLevel.error,
  });
  const eb = client.calendar.v4.exchangeBinding;
  const asUser = () => lark.withUserAccessToken(userToken);
  const want = {
    admin_account: admin,
    exchange_account: exchange,
    user_id: openId,
    exchange_binding_id: expectedId,
  };

  // 1. create
  let body = await success(
    eb.create(
      {
        data: { admin_account: admin, exchange_account: exchange, user_id: openId },
        params: { user_id_type: 'open_id' },
      },
      asUser(),
    ),
    'create',
  );
  checkBinding(body, 'create', { ...want, status: 'doing' });

  // 2. get (the id goes on the wire raw, with its '='; the SDK sends a {} body)
  body = await success(
    eb.get({ path: { exchange_binding_id: expectedId }, params: { user_id_type: 'open_id' } }, asUser()),
    'get',
  );
  checkBinding(body, 'get', want);
  check(
    ['doing', 'cal_done', 'timespan_done', 'done'].includes(body.data.status),
    `get: data.status is ${JSON.stringify(body.data.status)}`,
    body,
  );

  // 3. delete (also with a {} body)
  body = await success(eb.delete({ path: { exchange_binding_id: expectedId } }, asUser()), 'delete');

  // 4. get again: gone -> 404 -> AxiosError carrying the JSON body
  let r = await rejection(
    eb.get({ path: { exchange_binding_id: expectedId }, params: { user_id_type: 'open_id' } }, asUser()),
    'get after delete',
  );
  check(r.status === 404, `get after delete: HTTP ${r.status}, expected 404`, r.data);
  check(r.data && r.data.code === 195103, 'get after delete: expected response.data.code 195103', r.data);
  check(r.headers['x-tt-logid'], 'get after delete: no X-Tt-Logid header', r.headers);

  // Every call so far carried the user token; none fetched a tenant token.
  check(
    sent.length === 4 && sent.every((s) => s.authorization === `Bearer ${userToken}`),
    'user-token calls: unexpected requests on the wire',
    sent,
  );

  // 5. No withUserAccessToken: the SDK fetches a tenant token by itself and sends it.
  const before = sent.length;
  r = await rejection(
    eb.get({ path: { exchange_binding_id: expectedId }, params: { user_id_type: 'open_id' } }),
    'tenant token',
  );
  check(r.status === 400, `tenant token: HTTP ${r.status}, expected 400`, r.data);
  check(r.data && r.data.code === 99991663, 'tenant token: expected response.data.code 99991663', r.data);
  const calls = sent.slice(before);
  check(
    calls.length === 2 && calls[0].method === 'POST' && calls[0].url === `${baseUrl}${TOKEN_PATH}`,
    'tenant token: the SDK did not fetch a tenant token first',
    calls,
  );
  const tenantToken = await lark.internalCache.get(lark.CTenantAccessToken, { namespace: appId });
  check(
    typeof tenantToken === 'string' && tenantToken.startsWith('t-'),
    `tenant token: the SDK cached ${JSON.stringify(tenantToken)}, expected a t- token`,
  );
  check(
    calls[1].method === 'GET' && calls[1].authorization === `Bearer ${tenantToken}`,
    'tenant token: the GET did not carry the fetched tenant token',
    calls,
  );

  console.log(
    `${SDK}: OK create/get/delete/get(AxiosError 404, 195103) id=${expectedId} (sent raw) ` +
      '+ automatic tenant token -> AxiosError 400, 99991663',
  );
}

main().catch((e) => {
  if (sdkLog.length) console.error(sdkLog.join('\n'));
  if (e instanceof Mismatch) {
    console.error(`${SDK}: FAIL: ${e.message}`);
  } else {
    console.error(e);
    console.error(`${SDK}: FAIL: unexpected exception (see above)`);
  }
  process.exit(1);
});
