// Faults and the journal: a fault armed on the page makes the next API call fail with its
// code; the requests page shows that call live; the call is found by its log id.
import { BASE, check, checkEq, newContext, run } from './lib.mjs';
import { api, checkNotReloaded, checkPage, mark, signIn, waitLive } from './console-lib.mjs';

const CREATE = '/open-apis/calendar/v4/exchange_bindings?user_id_type=user_id';
const body = { admin_account: 'exadmin@acme.example', exchange_account: 'alice@acme.example', user_id: 'alice' };

await run(async (browser) => {
  const context = await newContext(browser);
  const page = await context.newPage();
  await signIn(page, '/_exbind/console/faults');
  await page.getByRole('heading', { name: 'No fault armed' }).waitFor();
  await checkPage(page, 'faults-empty');

  // The requests page, open and live in a second tab.
  const journal = await context.newPage();
  await journal.goto(`${BASE}/_exbind/console/requests`);
  await waitLive(journal);
  await mark(journal);

  // "Fail the next create with 190010": the form's defaults, times 2.
  checkEq(await page.getByLabel('Method').inputValue(), 'POST', 'default method');
  checkEq(await page.getByLabel('Answer with code').inputValue(), '190010', 'default code');
  await page.getByLabel('Times').fill('2');
  await page.getByRole('button', { name: 'Arm fault' }).click();
  await page.getByText(/^Armed rule fault-\d+: POST \/open-apis\/calendar\/v4\/exchange_bindings\.$/).waitFor();

  const failed = await api('POST', CREATE, { body });
  checkEq([failed.status, failed.json.code], [429, 190010], 'the next create answers the armed code');
  await page.reload();
  checkEq((await page.locator('#faults-table tbody td.num').first().textContent()).trim(), '1', 'the rule fired once');
  await checkPage(page, 'faults-armed');

  // The journal shows the failed call without a reload.
  const row = journal.locator(`tr[data-log-id="${failed.logId}"]`);
  await row.waitFor({ timeout: 20000 });
  checkEq(await row.getAttribute('data-code'), '190010', 'the journal row has the code');
  await checkNotReloaded(journal, 'the call appeared in the journal');
  await checkPage(journal, 'requests-live');

  // Removed from the page: the next create succeeds.
  await page.getByRole('button', { name: /^Remove rule/ }).click();
  await page.getByText('Rule removed.').waitFor();
  checkEq((await api('POST', CREATE, { body })).json.code, 0, 'create after the rule is removed');

  // Found by its log id.
  await journal.getByLabel('Find a request by its log id').fill(failed.logId);
  await journal.getByRole('button', { name: 'Find' }).click();
  await journal.waitForURL(`**/_exbind/console/requests/${failed.logId}`);
  await journal.getByText('current operation rate limited').waitFor();
  await checkPage(journal, 'request');

  // Filtered by code.
  await journal.goto(`${BASE}/_exbind/console/requests?code=190010`);
  checkEq(await journal.locator('#requests-table tbody tr').count(), 1, 'requests with code 190010');
  check(context.offHost().length === 0, `no request left for another host: ${context.offHost()}`);
  console.log('console faults and journal: ok');
});
