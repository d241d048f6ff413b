// The harness itself: chromium starts, the server's stylesheet loads with its content type,
// the shared layout's building blocks pass axe-core at phone and desktop width, screenshots
// are written, and a request to another host is caught by the guard.
import { BASE, DESKTOP, PHONE, check, checkA11y, newContext, run, screenshot } from './lib.mjs';

const SAMPLE = (css) => `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Layout sample · exbind</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="${css}"></head>
<body class="auth"><header class="auth-brand"><span class="brand"><span class="brand-mark" aria-hidden="true">e</span>exbind</span></header>
<main id="main" class="auth-main"><section class="card stack">
<h1>Sample card</h1><p class="muted">Muted text, <code>code</code>, and a <a href="#main">link</a>.</p>
<div class="alert alert-error"><p>An error alert.</p></div>
<div class="field"><label for="f">A field</label><input id="f" type="text" value="value"><span class="hint">A hint.</span></div>
<p><span class="badge badge-doing">doing</span> <span class="badge badge-done">done</span> <span class="badge badge-err">err</span></p>
<div class="actions"><button class="btn btn-primary" type="button">Primary</button><button class="btn" type="button">Secondary</button></div>
<img alt="" src="http://elsewhere.invalid/pixel.png" width="1" height="1">
</section></main></body></html>`;

await run(async (browser) => {
  const context = await newContext(browser, { viewport: DESKTOP });
  const page = await context.newPage();
  const css = await page.goto(`${BASE}/_exbind/assets/exbind.css`);
  check(css.status() === 200, `stylesheet status ${css.status()}`);
  check(css.headers()['content-type'] === 'text/css; charset=utf-8', `content type ${css.headers()['content-type']}`);
  // about:blank has another origin; the stylesheet comes from the server.
  await page.setContent(SAMPLE(`${BASE}/_exbind/assets/exbind.css`), { waitUntil: 'load' });
  const radius = await page.$eval('.card', (e) => getComputedStyle(e).borderTopLeftRadius);
  check(radius === '10px', `the stylesheet applies (card radius ${radius})`);
  await checkA11y(page, 'layout sample (desktop)');
  await screenshot(page, 'layout-desktop');
  await page.setViewportSize(PHONE);
  await checkA11y(page, 'layout sample (phone)');
  await screenshot(page, 'layout-phone');
  const off = context.offHost();
  check(off.length === 1 && off[0].startsWith('http://elsewhere.invalid/'), `off-host requests caught: ${off}`);
  console.log('harness: ok');
});
