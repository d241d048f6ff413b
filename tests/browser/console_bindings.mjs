// The bindings page: a binding created through the API appears without a reload and moves
// to done on its own; a scenario set on the tenant page, a binding created from the page,
// advance, force and delete from the page change what the API answers; the binding's page
// shows its time line and the requests that touched it; complete all and wipe.
import { BASE, check, checkEq, newContext, run, screenshot } from './lib.mjs';
import { api, bindingId, checkNotReloaded, checkPage, mark, signIn, waitLive } from './console-lib.mjs';

const ADMIN_ACCOUNT = 'exadmin@acme.example';
const get = (id) => api('GET', `/open-apis/calendar/v4/exchange_bindings/${encodeURIComponent(id)}`);

await run(async (browser) => {
  const context = await newContext(browser);
  const page = await context.newPage();
  page.on('dialog', (d) => d.accept());
  await signIn(page, '/_exbind/console/tenants/acme/bindings');
  await page.getByRole('heading', { name: 'No bindings in this tenant yet' }).waitFor();
  check((await page.locator('#curl-create').textContent()).includes('/open-apis/calendar/v4/exchange_bindings'), 'the empty state shows the curl line');
  await checkPage(page, 'bindings-empty');

  // Created by the API while the page is open: it appears, then reaches done, no reload.
  await waitLive(page);
  await mark(page);
  const alice = bindingId(ADMIN_ACCOUNT, 'alice@acme.example');
  const made = await api('POST', '/open-apis/calendar/v4/exchange_bindings?user_id_type=user_id', {
    body: { admin_account: ADMIN_ACCOUNT, exchange_account: 'alice@acme.example', user_id: 'alice' },
  });
  checkEq(made.json.code, 0, 'create through the API');
  const row = page.locator(`tr[data-id="${alice}"]`);
  await row.waitFor({ timeout: 20000 });
  await page.locator(`tr[data-id="${alice}"][data-status="done"]`).waitFor({ timeout: 30000 });
  await checkNotReloaded(page, 'the new binding appeared and reached done');
  await checkPage(page, 'bindings-live');

  // A scenario that holds the sync at doing, set on the tenant page.
  await page.goto(`${BASE}/_exbind/console/tenants/acme`);
  await page.getByLabel('Exchange account').fill('stall@acme.example');
  await page.getByLabel('Scenario', { exact: true }).selectOption('stall');
  await page.getByLabel('Stage').selectOption('doing');
  await page.getByRole('button', { name: 'Set scenario' }).click();
  await page.getByText('stall@acme.example: stall for bindings made from now on.').waitFor();
  await checkPage(page, 'tenant');

  // Created from the page.
  await page.goto(`${BASE}/_exbind/console/tenants/acme/bindings`);
  await page.getByText('Create a binding').click();
  await page.getByLabel('Admin account').selectOption(ADMIN_ACCOUNT);
  await page.getByLabel('Exchange account').fill('stall@acme.example');
  await page.getByLabel('User', { exact: true }).selectOption('bob');
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  await page.getByText('Bound stall@acme.example to bob (doing).').waitFor();
  const stall = bindingId(ADMIN_ACCOUNT, 'stall@acme.example');
  checkEq((await get(stall)).json.data.status, 'doing', 'the API answers the binding made on the page');

  // Advance and force from the page; the API answers what the page did.
  const stallRow = page.locator(`tr[data-id="${stall}"]`);
  await stallRow.getByRole('button', { name: 'Advance stall@acme.example' }).click();
  await page.getByText('stall@acme.example is now cal_done.').waitFor();
  // A hand push resumes the schedule (500 ms a stage) from there: by the time the API is
  // asked, a loaded machine may have let the engine take the next steps too.
  const advanced = (await get(stall)).json.data.status;
  check(['cal_done', 'timespan_done', 'done'].includes(advanced), `API status after Advance: ${advanced}`);
  await stallRow.getByLabel('Status to force for stall@acme.example').selectOption('err');
  await stallRow.getByRole('button', { name: 'Force the status of stall@acme.example' }).click();
  await page.getByText('stall@acme.example forced to err.').waitFor();
  checkEq((await get(stall)).json.data.status, 'err', 'API status after Force');
  await checkPage(page, 'bindings-actions');

  // Filters.
  await page.getByLabel('Status', { exact: true }).selectOption('err');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.locator(`tr[data-id="${stall}"]`).waitFor();
  checkEq(await page.locator('#bindings-table tbody tr').count(), 1, 'rows with status err');
  await page.getByLabel('Search accounts').fill('alice');
  await page.getByLabel('Status', { exact: true }).selectOption('');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.locator(`tr[data-id="${alice}"]`).waitFor();
  checkEq(await page.locator('#bindings-table tbody tr').count(), 1, 'rows matching alice');

  // The binding's own page: its time line and the requests that touched it.
  await page.locator(`tr[data-id="${alice}"] a`).first().click();
  await page.getByRole('heading', { name: 'Time line' }).waitFor();
  for (const st of ['doing', 'cal_done', 'timespan_done', 'done']) {
    await page.locator(`.timeline li[data-status="${st}"]`).waitFor();
  }
  await page.locator(`#requests-table tr[data-log-id="${made.logId}"]`).waitFor();
  await waitLive(page);
  await mark(page);
  const read = await get(alice);
  await page.locator(`#requests-table tr[data-log-id="${read.logId}"]`).waitFor({ timeout: 20000 });
  await checkNotReloaded(page, 'a read of the binding appeared on its page');
  await checkPage(page, 'binding');

  // Delete from the page: the API no longer finds it.
  await page.goto(`${BASE}/_exbind/console/tenants/acme/bindings`);
  await page.locator(`tr[data-id="${stall}"]`).getByRole('button', { name: 'Delete the binding of stall@acme.example' }).click();
  await page.getByText('Binding deleted.').waitFor();
  checkEq((await get(stall)).json.code, 195103, 'API after Delete');

  // Complete all, then wipe.
  const carol = bindingId(ADMIN_ACCOUNT, 'carol@acme.example');
  await api('PUT', '/_exbind/v1/tenants/acme/exchange_accounts/carol@acme.example/scenario', {
    token: process.env.EXBIND_ADMIN_TOKEN,
    body: { scenario: 'stall' },
  });
  await api('POST', '/open-apis/calendar/v4/exchange_bindings?user_id_type=user_id', {
    body: { admin_account: ADMIN_ACCOUNT, exchange_account: 'carol@acme.example', user_id: 'carol' },
  });
  await page.locator(`tr[data-id="${carol}"]`).waitFor({ timeout: 20000 });
  await page.getByRole('button', { name: 'Complete all' }).click();
  await page.getByText('1 binding(s) moved to done.').waitFor();
  checkEq((await get(carol)).json.data.status, 'done', 'API after Complete all');
  await page.getByRole('button', { name: "Wipe tenant's bindings" }).click();
  await page.getByText('2 binding(s) deleted.').waitFor();
  checkEq((await get(alice)).json.code, 195103, 'API after the wipe');
  await page.getByRole('heading', { name: 'No bindings in this tenant yet' }).waitFor();
  await screenshot(page, 'bindings-wiped');
  check(context.offHost().length === 0, `no request left for another host: ${context.offHost()}`);
  console.log('console bindings: ok');
});
