// A store app on exbind through the official Node SDK (@larksuiteoapi/node-sdk), unchanged
// but for its domain:
//
//   an event endpoint served by lark.adaptDefault + lark.EventDispatcher (encrypt key +
//   verification token) -> the app's event_url points at it -> a Client with
//   appType ISV, which asks for an app_ticket (resend) on its own -> the dispatcher's
//   built-in app_ticket handle caches the pushed ticket -> a call with lark.withTenantKey:
//   the SDK buys app_access_token (a-...) with the ticket, then tenant_access_token (t-...),
//   and sends it (the user-only binding API answers 400 / 99991663).
//
// Environment: EXBIND_BASE_URL, EXBIND_ADMIN_TOKEN, APP_ID, APP_SECRET, ENCRYPT_KEY,
// VERIFICATION_TOKEN, TENANT_KEY. Exits 0 with one summary line, 1 naming the first mismatch.
import http from 'node:http';
import lark from '@larksuiteoapi/node-sdk';

const SDK = '@larksuiteoapi/node-sdk';
const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
function check(ok, what, detail) {
  if (!ok) {
    console.error(`${SDK}: FAIL: ${what}`, detail === undefined ? '' : JSON.stringify(detail));
    process.exit(1);
  }
}

const base = env('EXBIND_BASE_URL');
const appId = env('APP_ID');
const tenantKey = env('TENANT_KEY');

const dispatcher = new lark.EventDispatcher({
  encryptKey: env('ENCRYPT_KEY'),
  verificationToken: env('VERIFICATION_TOKEN'),
  loggerLevel: lark.LoggerLevel.error,
});
const pushes = [];
const events = http.createServer((req, res) => {
  pushes.push({ signed: 'x-lark-signature' in req.headers });
  return lark.adaptDefault('/events', dispatcher)(req, res);
});
await new Promise((r) => events.listen(0, '127.0.0.1', r));
const eventUrl = `http://127.0.0.1:${events.address().port}/events`;

const patch = await fetch(`${base}/_exbind/v1/apps/${appId}`, {
  method: 'PATCH',
  headers: { Authorization: `Bearer ${env('EXBIND_ADMIN_TOKEN')}`, 'Content-Type': 'application/json' },
  body: JSON.stringify({ event_url: eventUrl }),
});
check((await patch.json()).code === 0, 'PATCH event_url');

// Seen on the wire: what the SDK asks exbind for.
const calls = [];
const wire = http.createServer(async (req, res) => {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const body = Buffer.concat(chunks);
  calls.push({ method: req.method, url: req.url, authorization: req.headers.authorization });
  const up = await fetch(base + req.url, {
    method: req.method,
    headers: { ...req.headers, host: new URL(base).host },
    body: ['GET', 'HEAD'].includes(req.method) ? undefined : body,
  });
  res.writeHead(up.status, { 'content-type': up.headers.get('content-type') || 'application/json' });
  res.end(Buffer.from(await up.arrayBuffer()));
});
await new Promise((r) => wire.listen(0, '127.0.0.1', r));
const domain = `http://127.0.0.1:${wire.address().port}`;

const client = new lark.Client({
  appId,
  appSecret: env('APP_SECRET'),
  appType: lark.AppType.ISV,
  domain,
  loggerLevel: lark.LoggerLevel.error,
});

// The client asked for a ticket by itself; wait for the dispatcher to cache it.
let ticket;
for (let i = 0; i < 300 && !ticket; i++) {
  ticket = await lark.internalCache.get(lark.CAppTicket, { namespace: appId });
  if (!ticket) await new Promise((r) => setTimeout(r, 100));
}
check(ticket, 'no app_ticket reached the dispatcher', { pushes, calls });
check(
  calls.some((c) => c.url === '/open-apis/auth/v3/app_ticket/resend'),
  'the ISV client did not ask for a ticket',
  calls,
);
check(pushes.every((p) => p.signed), 'unsigned push', pushes);

let r;
try {
  await client.calendar.v4.exchangeBinding.get(
    { path: { exchange_binding_id: 'bm9uZQ==' } },
    lark.withTenantKey(tenantKey),
  );
  check(false, 'the tenant-token call succeeded');
} catch (e) {
  r = e.response;
}
check(r && r.status === 400 && r.data.code === 99991663, 'expected 400 / 99991663', r && r.data);
const paths = calls.map((c) => c.url);
check(paths.includes('/open-apis/auth/v3/app_access_token'), 'no app_access_token call', paths);
check(paths.includes('/open-apis/auth/v3/tenant_access_token'), 'no tenant_access_token call', paths);
const sent = calls[calls.length - 1].authorization || '';
check(sent.startsWith('Bearer t-'), 'the SDK did not send a tenant token', calls);

events.close();
wire.close();
console.log(
  `${SDK}: OK EventDispatcher cached the encrypted app_ticket; ISV client bought ` +
    'app_access_token a-... and tenant_access_token t-... (user-only API: 400 / 99991663)',
);
process.exit(0);
