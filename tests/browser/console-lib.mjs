// What the console's browser tests share: signing in, calling the API beside the page,
// and checking a page (axe-core at phone and desktop width, a screenshot of each).
import { BASE, DESKTOP, PHONE, check, checkA11y, screenshot } from './lib.mjs';

export const ADMIN = process.env.EXBIND_ADMIN_TOKEN;
export const USER_TOKEN = process.env.EXBIND_USER_TOKEN;

/** Signs in on the sign-in page; ends on the page `next` asked for. */
export async function signIn(page, next = '/_exbind/console/') {
  await page.goto(`${BASE}${next}`);
  check(page.url().includes('/_exbind/console/sign-in'), `a page without a session goes to sign-in (${page.url()})`);
  await page.getByLabel('Admin token').fill(ADMIN);
  await Promise.all([page.waitForURL(`**${next}`), page.getByRole('button', { name: 'Sign in' }).click()]);
}

/** A call of the API as an app (or a script) makes it. */
export async function api(method, path, { token = USER_TOKEN, body } = {}) {
  const r = await fetch(`${BASE}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await r.json();
  return { status: r.status, json, logId: r.headers.get('x-tt-logid') };
}

/** The binding id of (admin, exchange), as the API computes it. */
export function bindingId(admin, exchange) {
  return Buffer.from(`${admin} ${exchange}`).toString('base64');
}

/** axe-core and a screenshot at desktop and at phone width; leaves the page at desktop. */
export async function checkPage(page, name) {
  await page.setViewportSize(DESKTOP);
  await checkA11y(page, `${name} (desktop)`);
  await screenshot(page, `${name}-desktop`);
  await page.setViewportSize(PHONE);
  await checkA11y(page, `${name} (phone)`);
  await screenshot(page, `${name}-phone`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `${name}: the page fits a phone's width (overflows by ${overflow}px)`);
  await page.setViewportSize(DESKTOP);
}

/** Marks the document, to tell later whether the page was reloaded. */
export async function mark(page) {
  await page.evaluate(() => { window.__notReloaded = true; });
}
export async function checkNotReloaded(page, what) {
  check(await page.evaluate(() => window.__notReloaded === true), `${what} without a reload`);
}

/** Waits until the page's event stream is open. */
export async function waitLive(page) {
  await page.locator('#live-badge[data-state="live"]').waitFor({ timeout: 20000 });
}
