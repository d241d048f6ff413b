// Signing in and out: a wrong token is refused, the session is an HttpOnly SameSite=Strict
// cookie, pages carry the CSP, a form without its CSRF token is refused, and after signing
// out every page goes back to the sign-in page (the old cookie too).
import { BASE, check, checkEq, newContext, run, screenshot } from './lib.mjs';
import { ADMIN, checkPage, signIn } from './console-lib.mjs';

await run(async (browser) => {
  const context = await newContext(browser);
  const page = await context.newPage();

  const first = await page.goto(`${BASE}/_exbind/console/faults`);
  check(page.url().startsWith(`${BASE}/_exbind/console/sign-in?next=`), `redirected to sign-in: ${page.url()}`);
  checkEq(first.headers()['content-security-policy'].split(';')[0], "default-src 'self'", 'CSP');
  await checkPage(page, 'sign-in');

  await page.getByLabel('Admin token').fill('not-the-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('That is not the admin token.').waitFor();
  check(page.url().includes('/sign-in'), 'still on the sign-in page');
  check((await context.cookies()).every((c) => c.name !== 'exbind_session'), 'no session after a wrong token');
  await screenshot(page, 'sign-in-wrong-token');

  await page.getByLabel('Admin token').fill(ADMIN);
  await Promise.all([page.waitForURL('**/_exbind/console/faults'), page.getByRole('button', { name: 'Sign in' }).click()]);
  const session = (await context.cookies()).find((c) => c.name === 'exbind_session');
  check(session, 'a session cookie');
  check(session.httpOnly, 'the session cookie is HttpOnly');
  checkEq(session.sameSite, 'Strict', 'the session cookie is SameSite=Strict');
  check(!page.url().includes(ADMIN) && !session.value.includes(ADMIN), 'the token is neither in the URL nor the cookie');
  check(await page.evaluate(() => !document.cookie.includes('exbind_session')), 'scripts cannot read the session');
  await page.getByRole('heading', { name: 'Faults', level: 1 }).waitFor();

  // A state-changing request without the session's CSRF token is refused.
  const forged = await page.request.post(`${BASE}/_exbind/console/faults`, {
    form: { op: 'clear', csrf: 'forged' },
    maxRedirects: 0,
  });
  checkEq(forged.status(), 403, 'a form with a wrong CSRF token');
  check((await forged.text()).includes('This form has expired'), 'the 403 page says why');
  const none = await page.request.post(`${BASE}/_exbind/console/faults`, { form: { op: 'clear' }, maxRedirects: 0 });
  checkEq(none.status(), 403, 'a form without a CSRF token');

  // Sign out: the session ends, for this browser and for the cookie it had.
  await Promise.all([page.waitForURL('**/_exbind/console/sign-in'), page.getByRole('button', { name: 'Sign out' }).click()]);
  await screenshot(page, 'signed-out');
  for (const p of ['/_exbind/console/', '/_exbind/console/tenants/acme/bindings', '/_exbind/console/requests', '/_exbind/console/seed']) {
    await page.goto(`${BASE}${p}`);
    check(page.url().startsWith(`${BASE}/_exbind/console/sign-in`), `${p} redirects to sign-in after sign-out (${page.url()})`);
  }
  const replay = await fetch(`${BASE}/_exbind/console/`, {
    headers: { Cookie: `exbind_session=${session.value}` },
    redirect: 'manual',
  });
  checkEq(replay.status, 303, 'the signed-out cookie, sent again');
  check(replay.headers.get('location').startsWith('/_exbind/console/sign-in'), 'it leads to sign-in');
  const events = await fetch(`${BASE}/_exbind/v1/events`, { headers: { Cookie: `exbind_session=${session.value}` } });
  checkEq(events.status, 401, 'the event stream refuses the signed-out cookie');

  // Signing in again works, and lands where it was asked to.
  await signIn(page, '/_exbind/console/requests');
  check(context.offHost().length === 0, `no request left for another host: ${context.offHost()}`);
  console.log('console session: ok');
});
