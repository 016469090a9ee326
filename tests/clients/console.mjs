// Drives the Tollgate console in Debian's Chromium (playwright-core, no downloaded browser) for
// tests/tests/e2e_console.rs: signs in through the identity provider, creates a virtual key in
// the console, sends a request with it, finds the request in the log explorer and its cost in
// the spend chart, then looks at the console as a member. Prints one JSON object of what it saw;
// the Rust test asserts on it.
//
// Settings (environment):
//   CONSOLE_URL        the gateway (http://127.0.0.1:PORT)
//   CONSOLE_ADMIN      IdP login of an admin (password: anything)
//   CONSOLE_MEMBER     IdP login of a member
//   CONSOLE_MODEL      model of the request sent with the new key
//   CONSOLE_SHOTS      directory for screenshots (optional)
//   TOLLGATE_TEST_CHROMIUM  the browser (default /usr/bin/chromium)
import { chromium } from 'playwright-core';

const url = process.env.CONSOLE_URL;
const shots = process.env.CONSOLE_SHOTS;
const seen = { consoleErrors: [], unlabeled: [] };
const TIMEOUT = 20000;

const browser = await chromium.launch({
  executablePath: process.env.TOLLGATE_TEST_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu'],
});

let current = null;

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  current = page;
  // Errors of the console's own pages (the identity provider's pages are not under test), and
  // every failed call the console makes to the gateway.
  const ours = () => page.url().startsWith(`${url}/`) && !page.url().startsWith(`${url}/auth/`);
  page.on('console', (m) => { if (m.type() === 'error' && ours() && !m.text().startsWith('Failed to load resource')) seen.consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => seen.consoleErrors.push(String(e)));
  page.on('response', (r) => {
    if (r.url().startsWith(url) && r.status() >= 400) seen.consoleErrors.push(`${r.status()} ${r.request().method()} ${r.url().slice(url.length)}`);
  });
  page.on('requestfailed', (r) => { if (r.url().startsWith(url)) seen.consoleErrors.push(`failed ${r.url().slice(url.length)}`); });
  return page;
}

async function shot(page, name) {
  if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage: false });
}

/** Signs in through the console's SSO link and the provider's login and consent pages. */
async function signIn(page, login) {
  await page.goto(`${url}/auth/login?return_to=%2F`);
  await page.locator('input[name="login"]').fill(login);
  await page.locator('input[name="password"]').fill('any');
  await page.locator('button[type="submit"]').click();
  // The consent page (first sign-in of this login).
  await page.waitForURL((u) => u.href.startsWith(url) || u.href.includes('/interaction/'));
  if (!page.url().startsWith(url)) {
    await page.locator('button[type="submit"]').click();
  }
  await page.waitForURL((u) => u.href.startsWith(`${url}/`));
  await page.locator('#who').getByText(login, { exact: false }).waitFor();
}

const navLabels = (page) => page.locator('#nav a').allInnerTexts();

/** Form controls with no accessible name: neither inside a label nor aria-labelled. */
const unlabeled = (page) =>
  page.evaluate(() =>
    [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
      .filter((el) => !el.closest('label') && !el.getAttribute('aria-label'))
      .map((el) => el.outerHTML.slice(0, 80)),
  );

try {
  // --- The admin -------------------------------------------------------------------------------
  const admin = await newPage();
  await signIn(admin, process.env.CONSOLE_ADMIN);
  seen.adminWho = await admin.locator('#who').innerText();
  seen.adminNav = await navLabels(admin);
  await shot(admin, 'overview-empty');

  // A virtual key made in the console; its value is shown once.
  await admin.goto(`${url}/#/keys`);
  await admin.getByLabel('Name').fill('console-key');
  await admin.getByRole('button', { name: 'Create key' }).click();
  const value = admin.locator('[data-testid="new-key-value"]');
  await value.waitFor();
  seen.keyValue = await value.innerText();
  seen.unlabeled.push(...(await unlabeled(admin)));
  await admin.locator('table').getByText('console-key').waitFor();
  await shot(admin, 'virtual-keys');

  // A request with it, as Claude Code would send it.
  const resp = await fetch(`${url}/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': seen.keyValue, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
    body: JSON.stringify({ model: process.env.CONSOLE_MODEL, max_tokens: 16, messages: [{ role: 'user', content: 'hello' }] }),
  });
  seen.requestStatus = resp.status;
  seen.requestId = resp.headers.get('request-id');
  await resp.text();

  // The log explorer lists it (usage arrives about a second after the request ends).
  await admin.goto(`${url}/#/logs`);
  const row = admin.locator('tbody tr', { hasText: 'console-key' }).first();
  for (let i = 0; i < 40 && !(await row.count()); i++) {
    await admin.waitForTimeout(500);
    await admin.getByRole('button', { name: 'Apply' }).click();
  }
  seen.unlabeled.push(...(await unlabeled(admin)));
  await shot(admin, 'logs');
  // Keyboard: focus the row and press Enter for the detail.
  await row.focus();
  await admin.keyboard.press('Enter');
  await admin.getByRole('heading', { name: /^Request / }).waitFor();
  seen.detailId = await admin.locator('h1 code').innerText();
  seen.detailModel = await admin.locator('dt:has-text("Model served") + dd').innerText();
  await shot(admin, 'log-detail');

  // The overview's spend chart (uPlot draws on a canvas) and the top keys.
  await admin.goto(`${url}/#/`);
  await admin.locator('.chart canvas').first().waitFor();
  seen.topKeys = await admin.locator('table:has(caption:text("Top keys by cost")) tbody tr td:first-child').allInnerTexts();
  await shot(admin, 'overview');

  // The spend page by key, and its CSV export.
  await admin.goto(`${url}/#/spend`);
  await admin.getByLabel('Group by').selectOption('key');
  await admin.getByRole('button', { name: 'Show' }).click();
  await admin.locator('table:has(caption:text("Spend by group")) tbody tr', { hasText: 'console-key' }).waitFor();
  seen.spendGroups = await admin.locator('table:has(caption:text("Spend by group")) tbody tr td:first-child').allInnerTexts();
  // The chart has a series per key (uPlot's legend names them).
  seen.spendLegend = await admin.locator('.chart .u-legend .u-series').allInnerTexts();
  seen.unlabeled.push(...(await unlabeled(admin)));
  await shot(admin, 'spend');
  const [csv] = await Promise.all([
    admin.waitForEvent('download'),
    admin.getByRole('button', { name: 'Download CSV' }).click(),
  ]);
  const { readFile } = await import('node:fs/promises');
  seen.csv = await readFile(await csv.path(), 'utf8');

  for (const [hash, name] of [['#/teams', 'teams'], ['#/fleet', 'fleet'], ['#/audit', 'audit'], ['#/providers', 'providers']]) {
    await admin.goto(`${url}/${hash}`);
    await admin.locator('main h1').waitFor();
    await admin.waitForLoadState('networkidle');
    seen.unlabeled.push(...(await unlabeled(admin)));
    if (name === 'audit') seen.auditActions = await admin.locator('tbody tr td:nth-child(3)').allInnerTexts();
    await shot(admin, name);
  }

  // The jobs page: an export of the request logs as a job, followed to its end and downloaded.
  await admin.goto(`${url}/#/jobs`);
  await admin.getByRole('heading', { name: 'Jobs' }).waitFor();
  await admin.getByRole('combobox', { name: /^Export/ }).selectOption('logs');
  await admin.getByRole('button', { name: 'Start export' }).click();
  const ready = admin.locator('main p', { hasText: 'Export ready' }).getByRole('button', { name: 'Download' });
  await ready.waitFor();
  seen.unlabeled.push(...(await unlabeled(admin)));
  await shot(admin, 'jobs');
  const [exported] = await Promise.all([admin.waitForEvent('download'), ready.click()]);
  seen.exportName = exported.suggestedFilename();
  seen.exportCsv = await readFile(await exported.path(), 'utf8');

  // --- A member: their own key and requests only ---------------------------------------------------
  const member = await newPage();
  await signIn(member, process.env.CONSOLE_MEMBER);
  seen.memberWho = await member.locator('#who').innerText();
  seen.memberNav = await navLabels(member);
  // Each page's own content, not the "Loading…" placeholder or the page before.
  await member.goto(`${url}/#/keys`);
  await member.getByRole('heading', { name: 'Virtual keys' }).waitFor();
  await member.locator('main table, main p.empty').first().waitFor();
  seen.memberKeys = await member.locator('tbody tr td:first-child').allInnerTexts();
  seen.memberCanCreate = await member.getByRole('button', { name: 'Create key' }).count();
  await member.goto(`${url}/#/logs`);
  await member.locator('main p.hint', { hasText: /^\d+ requests?/ }).waitFor();
  seen.memberLogRows = await member.locator('tbody tr').count();
  await member.goto(`${url}/#/me`);
  await member.getByRole('heading', { name: 'My key' }).waitFor();
  seen.memberKeyPrefix = await member.locator('dt:has-text("Key") + dd').innerText();
  await shot(member, 'my-key');
} catch (e) {
  seen.failure = String(e && e.stack || e);
  if (current) {
    seen.failureUrl = current.url();
    seen.failureText = (await current.locator('main').innerText().catch(() => '')).slice(0, 2000);
    await shot(current, 'failure').catch(() => {});
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
