// What every browser test of exbind's pages shares: Debian's chromium, headless, through
// playwright-core (no browser download); viewports; screenshots; axe-core; a guard that no
// request leaves for a host the test did not allow; and a runner that exits non-zero with
// the reason when a check fails.
//
// Environment (set by crates/exbind/tests/common, `browser_test`):
//   EXBIND_BASE_URL         the server under test, e.g. http://127.0.0.1:40123
//   EXBIND_SCREENSHOT_DIR   where screenshots go (created)
//   CHROMIUM                the browser binary (default /usr/bin/chromium)

import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const BASE = process.env.EXBIND_BASE_URL;
export const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1280, height: 860 };

const SHOTS = process.env.EXBIND_SCREENSHOT_DIR || 'screenshots';

/** Throws with `message` unless `cond` holds. */
export function check(cond, message) {
  if (!cond) throw new Error(`check failed: ${message}`);
}

/** Throws unless `actual` equals `expected` (compared as JSON). */
export function checkEq(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`check failed: ${what}: expected ${e}, got ${a}`);
}

/** Chromium as this machine can run it: headless, as root, with no background traffic
 * (the network is closed; Chromium would otherwise try to reach its own services). */
export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-default-apps',
    ],
  });
}

/**
 * A fresh context (its own cookies) at `viewport`. Requests to any origin but the server's
 * and `allow`'s are aborted and recorded: `offHost()` lists them, so a test can assert that
 * a page loads nothing from another host.
 */
export async function newContext(browser, { viewport = DESKTOP, allow = [], javaScriptEnabled = true } = {}) {
  const context = await browser.newContext({ viewport, locale: 'en-US', javaScriptEnabled });
  const allowed = new Set([new URL(BASE).origin, ...allow.map((u) => new URL(u).origin)]);
  const blocked = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith('data:') || allowed.has(new URL(url).origin)) return route.continue();
    blocked.push(url);
    return route.abort('blockedbyclient');
  });
  context.offHost = () => [...blocked];
  return context;
}

/** Saves a full-page screenshot `NAME.png` and says where. */
export async function screenshot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  const file = path.resolve(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot: ${file}`);
  return file;
}

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/**
 * Runs axe-core on the page (WCAG 2.1 A/AA and best practices) and fails on any serious or
 * critical violation, listing each with the elements it found. Evaluated through the
 * DevTools protocol, so the page's Content-Security-Policy need not allow it.
 */
export async function checkA11y(page, label) {
  await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
    }),
  );
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (bad.length) {
    const lines = bad.map(
      (v) => `  ${v.impact} ${v.id}: ${v.help}\n` + v.nodes.map((n) => `    ${n.target.join(' ')}`).join('\n'),
    );
    throw new Error(`axe-core on ${label}: ${bad.length} serious violation(s)\n${lines.join('\n')}`);
  }
  console.log(`axe: ${label}: no serious violations (${result.passes.length} rules passed)`);
}

/** Runs `main(browser)` with a browser, closes it, and exits 1 with the error if it threw. */
export async function run(main) {
  check(BASE, 'EXBIND_BASE_URL is set');
  const browser = await launch();
  try {
    await main(browser);
  } catch (e) {
    console.error(e && e.stack ? e.stack : String(e));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}
