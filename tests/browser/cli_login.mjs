// `exbind login` completed by a real browser: the URL the CLI printed (LOGIN_URL), the
// authorize page's account step (the user LOGIN_USER, `tenant/user`), the consent step's
// Authorize, and the redirect to the CLI's loopback listener, whose page says the login is
// done and may be closed. Screenshots of each step; axe-core on the CLI's page.
import { DESKTOP, check, checkA11y, newContext, run, screenshot } from './lib.mjs';

const LOGIN_URL = process.env.LOGIN_URL;
const USER = process.env.LOGIN_USER;

await run(async (browser) => {
  check(LOGIN_URL && USER, 'LOGIN_URL and LOGIN_USER are set');
  const redirect = new URL(new URL(LOGIN_URL).searchParams.get('redirect_uri'));
  // The loopback listener is the only other host the login may reach.
  const context = await newContext(browser, { viewport: DESKTOP, allow: [redirect.origin] });
  const page = await context.newPage();

  await page.goto(LOGIN_URL);
  await screenshot(page, 'cli-login-account');
  await page.locator(`button[name="user"][value="${USER}"]`).click();
  await page.waitForSelector('button[name="decision"][value="allow"]');
  await screenshot(page, 'cli-login-consent');
  await page.getByRole('button', { name: 'Authorize' }).click();

  await page.waitForURL((u) => u.origin === redirect.origin && u.pathname === redirect.pathname);
  await page.getByRole('heading', { name: 'Logged in' }).waitFor();
  const text = await page.textContent('main');
  check(/You may close this page/.test(text), `the CLI's page says it may be closed: ${text}`);
  check(!/[?&]code=/.test(await page.content()), 'the page does not show the code');
  await checkA11y(page, "exbind login's page");
  await screenshot(page, 'cli-login-done');
  check(context.offHost().length === 0, `no request to another host: ${context.offHost()}`);
  console.log('cli_login: ok');
});
