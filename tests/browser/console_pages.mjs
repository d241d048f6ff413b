// The other pages: a bad seed shows its violations by path and applies nothing, a good one
// applies; the apps page mints a token shown once with a curl line that works; the
// overview and tenant pages; keyboard use; every page passes axe-core at both widths.
import { BASE, check, checkEq, newContext, run, screenshot } from './lib.mjs';
import { api, checkPage, signIn } from './console-lib.mjs';

const BAD_SEED = `[[tenants]]
tenant_key = "newco"

[[tenants.users]]
user_id = "amy"

[[tenants.users]]
user_id = "amy"

[[apps]]
app_id = "cli_newco"
app_secret = "s"
tenants = ["newco"]
scopes = ["calendar:teleport"]
`;
const GOOD_SEED = BAD_SEED.replace('user_id = "amy"\n\n[[tenants.users]]\nuser_id = "amy"', 'user_id = "amy"\nsuper_admin = true')
  .replace('calendar:teleport', 'calendar:calendar');

await run(async (browser) => {
  const context = await newContext(browser);
  const page = await context.newPage();
  await signIn(page);

  // Keyboard: the skip link is the first stop and leads to the content.
  await page.keyboard.press('Tab');
  checkEq(await page.evaluate(() => document.activeElement.textContent), 'Skip to content', 'first tab stop');
  await page.keyboard.press('Enter');
  checkEq(await page.evaluate(() => document.activeElement.id), 'main', 'the skip link moves focus to the content');
  await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
  await checkPage(page, 'overview');

  // Seed: violations by path, nothing applied; then a good one.
  await page.getByRole('link', { name: 'Seed' }).click();
  await page.getByLabel('Seed document').fill(BAD_SEED);
  await page.getByRole('button', { name: 'Apply seed' }).click();
  const violations = page.locator('#seed-violations');
  await violations.waitFor();
  const text = await violations.textContent();
  check(text.includes('tenants[0].users[1].user_id'), `the duplicate user is named by its path: ${text}`);
  check(text.includes('apps[0].scopes[0]'), `the unknown scope is named by its path: ${text}`);
  checkEq(await page.getByLabel('Seed document').inputValue(), BAD_SEED, 'the document is kept for fixing');
  checkEq((await api('GET', '/_exbind/v1/tenants/newco', { token: process.env.EXBIND_ADMIN_TOKEN })).json.code, 99991201, 'nothing applied');
  await checkPage(page, 'seed-violations');
  await page.getByLabel('Seed document').fill(GOOD_SEED);
  await page.getByRole('button', { name: 'Apply seed' }).click();
  await page.getByText(/Seed applied: \d+ added, \d+ updated\./).waitFor();
  checkEq((await api('GET', '/_exbind/v1/tenants/newco', { token: process.env.EXBIND_ADMIN_TOKEN })).json.code, 0, 'the good seed applied');

  // Apps: mint a token for amy; the page's curl line carries a token the API accepts.
  await page.getByRole('link', { name: 'Apps' }).click();
  await checkPage(page, 'apps');
  const card = page.locator('article', { has: page.getByRole('heading', { name: 'cli_newco' }) });
  await card.getByLabel('User id').fill('amy');
  await card.getByRole('button', { name: 'Mint user token for cli_newco' }).click();
  const token = (await page.locator('#minted-token').textContent()).trim();
  check(token.startsWith('u-'), `a user token is shown: ${token}`);
  check((await page.locator('#minted-curl').textContent()).includes(`Bearer ${token}`), 'the curl line carries it');
  const probe = await api('GET', '/open-apis/calendar/v4/exchange_bindings/ZXhhZG1pbkBuZXdjby5leGFtcGxlIGFAbmV3Y28uZXhhbXBsZQ==', { token });
  check(![99991668, 99991663, 99991661].includes(probe.json.code), `the minted token is accepted (code ${probe.json.code})`);
  await checkPage(page, 'apps-minted');

  // Tenant page: make alice a super admin; the API says so.
  await page.goto(`${BASE}/_exbind/console/tenants/acme`);
  await page.locator('tr[data-user="alice"]').getByRole('button', { name: 'Make super admin for alice' }).click();
  await page.getByText('alice is active, super admin.').waitFor();
  const alice = await api('GET', '/_exbind/v1/tenants/acme/users/alice', { token: process.env.EXBIND_ADMIN_TOKEN });
  checkEq(alice.json.data.super_admin, true, 'API after the toggle');
  await page.locator('li', { hasText: 'exadmin2@acme.example' }).getByRole('button', { name: /Mark failed/ }).click();
  await page.getByText('exadmin2@acme.example is failed.').waitFor();

  // An unknown page is a readable page, not JSON.
  const missing = await page.goto(`${BASE}/_exbind/console/nowhere`);
  checkEq(missing.status(), 404, 'an unknown console page');
  await page.getByRole('heading', { name: 'Page not found' }).waitFor();
  check(context.offHost().length === 0, `no request left for another host: ${context.offHost()}`);

  // Without JavaScript a seed file is uploaded as it is, its format taken from its name.
  const plain = await newContext(browser, { javaScriptEnabled: false });
  const noJs = await plain.newPage();
  await signIn(noJs, '/_exbind/console/seed');
  await noJs.getByRole('button', { name: 'Apply seed' }).click();
  await noJs.getByText('the form holds no seed: paste a document or choose a file').waitFor();
  const jsonSeed = { tenants: [{ tenant_key: 'jsonco', users: [{ user_id: 'joe', super_admin: true }] }] };
  await noJs.getByLabel('Upload a file').setInputFiles({
    name: 'jsonco.json',
    mimeType: 'application/json',
    buffer: Buffer.from(JSON.stringify(jsonSeed)),
  });
  checkEq(await noJs.getByLabel('Seed document').inputValue(), '', 'no script filled the box');
  await noJs.getByRole('button', { name: 'Apply seed' }).click();
  await noJs.getByText(/Seed applied: \d+ added, \d+ updated\./).waitFor();
  checkEq((await api('GET', '/_exbind/v1/tenants/jsonco/users/joe', { token: process.env.EXBIND_ADMIN_TOKEN })).json.data.super_admin, true, 'the uploaded JSON seed applied');
  await screenshot(noJs, 'seed-uploaded-without-js');
  console.log('console pages: ok');
});
