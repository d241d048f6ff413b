// The login an app's users go through (oauth.md §2), in chromium: from the authorize URL
// through choosing an account and consenting to the redirect back to the app — here the
// test server's own loopback address, which an app with no registered redirect URIs may
// use on any port and path — then the code exchanged with its PKCE verifier. Cancel on
// each step, an error page, the pages without JavaScript, and axe-core on every page at
// phone and desktop width.
import { createHash, randomBytes } from 'node:crypto';
import { BASE, PHONE, DESKTOP, check, checkEq, checkA11y, newContext, run, screenshot } from './lib.mjs';

const APP = process.env.EXBIND_APP_ID;
const SECRET = process.env.EXBIND_APP_SECRET;
const CALLBACK = `${BASE}/_exbind/healthz`;

function authorizeUrl(params) {
  const u = new URL(`${BASE}/open-apis/authen/v1/authorize`);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.toString();
}

async function onCallback(page) {
  await page.waitForURL((u) => u.toString().startsWith(CALLBACK));
  return new URL(page.url()).searchParams;
}

await run(async (browser) => {
  for (const [label, viewport] of [['desktop', DESKTOP], ['phone', PHONE]]) {
    const context = await newContext(browser, { viewport });
    const page = await context.newPage();
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const state = `st-${label}`;
    const resp = await page.goto(
      authorizeUrl({
        client_id: APP,
        redirect_uri: `${CALLBACK}?from=app`,
        response_type: 'code',
        state,
        code_challenge: challenge,
        code_challenge_method: 'S256',
      }),
    );
    checkEq(resp.status(), 200, 'the authorize page');
    checkEq(resp.headers()['content-type'], 'text/html; charset=utf-8', 'its content type');
    await page.getByRole('heading', { name: 'Choose an account' }).waitFor();
    checkEq(await page.locator('html').getAttribute('lang'), 'en', 'lang');
    const boss = page.locator('form[method="post"][action="/open-apis/authen/v1/authorize"] button[name="user"][value="acme/boss"]');
    check((await boss.innerText()).includes('Boss') && (await boss.innerText()).includes('boss'), 'the button names the user and its id');
    check((await page.locator('input[type="hidden"][name="request"]').count()) === 1, 'a hidden request handle');
    checkEq(await page.locator('button[value="acme/gone"]').count(), 0, 'a dismissed user is not offered');
    await checkA11y(page, `choose account (${label})`);
    await screenshot(page, `choose-account-${label}`);

    await boss.click();
    await page.getByRole('button', { name: 'Authorize' }).waitFor();
    check(await page.getByText('calendar:exchange.bindings:read').isVisible(), 'the consent page lists the scopes');
    check(await page.getByText('Acme Calendar Sync').first().isVisible(), 'the consent page names the app');
    await checkA11y(page, `consent (${label})`);
    await screenshot(page, `consent-${label}`);

    await page.getByRole('button', { name: 'Authorize' }).click();
    const q = await onCallback(page);
    checkEq(q.get('from'), 'app', "the redirect URI's own query is kept");
    checkEq(q.get('state'), state, 'state');
    const code = q.get('code');
    check(code && code.length >= 32, `a code: ${code}`);
    check(context.offHost().length === 0, `nothing loaded from other hosts: ${context.offHost()}`);

    // What the app does next: exchange the code with its verifier.
    const token = await page.request.post(`${BASE}/open-apis/authen/v2/oauth/token`, {
      data: { grant_type: 'authorization_code', client_id: APP, client_secret: SECRET, code, code_verifier: verifier,
              redirect_uri: `${CALLBACK}?from=app` },
    });
    const t = await token.json();
    checkEq(t.code, 0, `the exchange: ${JSON.stringify(t)}`);
    check(t.access_token.startsWith('eyJ'), 'a JWT access token');
    await context.close();
  }

  // Cancel, from consent and from the account step.
  const context = await newContext(browser);
  const page = await context.newPage();
  await page.goto(authorizeUrl({ client_id: APP, redirect_uri: CALLBACK, state: 'c1', login_hint: 'alice' }));
  await page.getByRole('button', { name: 'Cancel' }).click();
  let q = await onCallback(page);
  checkEq([q.get('error'), q.get('state'), q.get('code')], ['access_denied', 'c1', null], 'cancel on consent');
  await page.goto(authorizeUrl({ client_id: APP, redirect_uri: CALLBACK, state: 'c2' }));
  await page.getByRole('button', { name: 'Cancel' }).click();
  q = await onCallback(page);
  checkEq([q.get('error'), q.get('state')], ['access_denied', 'c2'], 'cancel on the account step');

  // A redirect URI the app does not allow: an error page, no redirect.
  const bad = await page.goto(authorizeUrl({ client_id: APP, redirect_uri: 'https://evil.example/cb' }));
  checkEq(bad.status(), 400, 'the error page');
  check(page.url().startsWith(BASE), 'no redirect');
  await page.getByRole('heading', { name: 'Redirect URI not allowed' }).waitFor();
  await checkA11y(page, 'error page');
  await screenshot(page, 'error-redirect-uri');
  await context.close();

  // Without JavaScript the whole flow works the same.
  const plain = await newContext(browser, { javaScriptEnabled: false, viewport: PHONE });
  const p2 = await plain.newPage();
  await p2.goto(authorizeUrl({ client_id: APP, redirect_uri: CALLBACK, state: 'nojs' }));
  await p2.locator('button[name="user"][value="acme/alice"]').click();
  await p2.locator('button[name="decision"][value="allow"]').click();
  q = await onCallback(p2);
  checkEq(q.get('state'), 'nojs', 'state without JavaScript');
  check(q.get('code'), 'a code without JavaScript');
  await plain.close();
  console.log('authorize_flow: ok');
});
