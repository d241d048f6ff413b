// Drives exbind's login routes with the official Node SDK (@larksuiteoapi/node-sdk),
// unchanged but for its domain: the SDK's own client.authen calls.
//
// Flow: oidcAccessToken.create (code -> u-/ur- tokens; the SDK sends the app's token it
// fetched itself) -> oidcRefreshAccessToken.create -> userInfo.get with the new token
// (withUserAccessToken; fields by scope) -> the spent refresh token again (an AxiosError,
// 400 / 20073) -> the older accessToken.create / refreshAccessToken.create, whose data also
// carries the user info.
//
// Environment: EXBIND_BASE_URL, APP_ID, APP_SECRET, CODE_OIDC, CODE_OLD, USER_OPEN_ID,
// USER_EMAIL, USER_NAME (see authen_flow.py).
//
// Exits 0 and prints one summary line on success; exits 1 naming the first mismatch otherwise.

import lark from '@larksuiteoapi/node-sdk';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const SDK = `node @larksuiteoapi/node-sdk ${require('@larksuiteoapi/node-sdk/package.json').version}`;

class Mismatch extends Error {}

function env(name) {
  const v = process.env[name];
  if (!v) throw new Mismatch(`environment variable ${name} is not set`);
  return v;
}

function check(cond, what, detail) {
  if (!cond) throw new Mismatch(detail === undefined ? what : `${what}\n    ${JSON.stringify(detail)}`);
}

function checkTokens(resp, step) {
  check(resp.code === 0, `${step}: code ${resp.code}`, resp);
  const d = resp.data;
  check(d.access_token.startsWith('u-'), `${step}: access_token is not u-…`, d);
  check(d.refresh_token.startsWith('ur-'), `${step}: refresh_token is not ur-…`, d);
  check(d.token_type === 'Bearer' && d.expires_in > 0 && d.refresh_expires_in > 0, `${step}: token fields`, d);
  return d;
}

async function main() {
  const client = new lark.Client({
    appId: env('APP_ID'),
    appSecret: env('APP_SECRET'),
    domain: env('EXBIND_BASE_URL'),
    loggerLevel: lark.LoggerLevel.fatal,
  });
  const [openId, email, name] = [env('USER_OPEN_ID'), env('USER_EMAIL'), env('USER_NAME')];

  const first = checkTokens(
    await client.authen.oidcAccessToken.create({ data: { grant_type: 'authorization_code', code: env('CODE_OIDC') } }),
    'oidcAccessToken',
  );
  const second = checkTokens(
    await client.authen.oidcRefreshAccessToken.create({
      data: { grant_type: 'refresh_token', refresh_token: first.refresh_token },
    }),
    'oidcRefreshAccessToken',
  );
  check(second.refresh_token !== first.refresh_token, 'a new refresh token');

  const info = await client.authen.userInfo.get({}, lark.withUserAccessToken(second.access_token));
  check(info.code === 0, 'userInfo: code', info);
  check(info.data.open_id === openId && info.data.name === name, 'userInfo: open_id and name', info.data);
  check(info.data.email === email, 'userInfo: email (the app holds the email scope)', info.data);
  check(info.data.user_id === undefined && info.data.mobile === undefined, 'userInfo: no user_id or mobile without their scopes', info.data);

  try {
    await client.authen.oidcRefreshAccessToken.create({
      data: { grant_type: 'refresh_token', refresh_token: first.refresh_token },
    });
    throw new Mismatch('a spent refresh token was accepted');
  } catch (e) {
    if (e instanceof Mismatch) throw e;
    check(e.response && e.response.status === 400, 'a spent refresh token: HTTP 400', e.message);
    check(e.response.data.code === 20073, 'a spent refresh token: 20073', e.response.data);
  }

  const old = checkTokens(
    await client.authen.accessToken.create({ data: { grant_type: 'authorization_code', code: env('CODE_OLD') } }),
    'accessToken',
  );
  check(old.open_id === openId && old.name === name, 'accessToken: the user info', old);
  const refreshed = checkTokens(
    await client.authen.refreshAccessToken.create({ data: { grant_type: 'refresh_token', refresh_token: old.refresh_token } }),
    'refreshAccessToken',
  );
  check(refreshed.email === email, 'refreshAccessToken: email', refreshed);
  console.log(
    `${SDK}: OK oidcAccessToken, oidcRefreshAccessToken, userInfo (fields by scope), spent refresh token -> 400/20073, accessToken, refreshAccessToken`,
  );
}

try {
  await main();
} catch (e) {
  console.error(e instanceof Mismatch ? `${SDK}: FAIL: ${e.message}` : e);
  if (!(e instanceof Mismatch)) console.error(`${SDK}: FAIL: unexpected exception`);
  process.exitCode = 1;
}
