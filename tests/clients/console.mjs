// Drives the Tollgate console in Debian's Chromium (playwright-core, no downloaded browser) for
// tests/tests/e2e_console.rs: signs in through the identity provider, creates a virtual key in
// the console, sends a request with it, finds the request in the log explorer and its cost in
// the spend chart, adds an MCP server on the MCP page, edits a team's budget, a key's limits (a bad value first), a provider key, a
// price override and the group mappings through the console's forms, then looks at the console as
// a member. Prints one JSON object of what it saw; the Rust test asserts on it (and reads back
// through the admin API what the forms stored).
//
// Settings (environment):
//   CONSOLE_URL        the gateway (http://127.0.0.1:PORT)
//   CONSOLE_ADMIN      IdP login of an admin (password: anything)
//   CONSOLE_MEMBER     IdP login of a member
//   CONSOLE_MODEL      model of the request sent with the new key
//   CONSOLE_SHOTS      directory for screenshots (optional)
//   CONSOLE_EDITS      JSON: the values to type in the edit forms (see e2e_console.rs)
//   CONSOLE_SECRET     a literal secret stored in a provider key, which no page may show
//   TOLLGATE_TEST_CHROMIUM  the browser (default /usr/bin/chromium)
import { chromium } from 'playwright-core';

const url = process.env.CONSOLE_URL;
const shots = process.env.CONSOLE_SHOTS;
const seen = { consoleErrors: [], unlabeled: [], expectedRefusals: [] };
const edits = JSON.parse(process.env.CONSOLE_EDITS || '{}');
// Set while a step sends a value the API must refuse: that answer is expected, not a failure.
let expectRefusal = false;
const TIMEOUT = 20000;

const browser = await chromium.launch({
  executablePath: process.env.TOLLGATE_TEST_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu'],
});

let current = null;

async function newPage() {
  // UTC, so the expiry typed in a key's form is a known instant.
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, timezoneId: 'UTC' });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  current = page;
  // Errors of the console's own pages (the identity provider's pages are not under test), and
  // every failed call the console makes to the gateway.
  const ours = () => page.url().startsWith(`${url}/`) && !page.url().startsWith(`${url}/auth/`);
  page.on('console', (m) => { if (m.type() === 'error' && ours() && !m.text().startsWith('Failed to load resource')) seen.consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => seen.consoleErrors.push(String(e)));
  page.on('response', (r) => {
    if (!r.url().startsWith(url) || r.status() < 400) return;
    const line = `${r.status()} ${r.request().method()} ${r.url().slice(url.length)}`;
    (expectRefusal ? seen.expectedRefusals : seen.consoleErrors).push(line);
  });
  // Deletions ask for a confirmation: accepted.
  page.on('dialog', (d) => d.accept());
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

  // An MCP server added on the MCP page (as JSON): listed, its header secret never shown again.
  const mcpSecret = `${process.env.CONSOLE_SECRET}-mcp`;
  await admin.goto(`${url}/#/mcp`);
  await admin.getByLabel('New MCP server (JSON)').fill(JSON.stringify({
    name: 'docs', transport: 'http', url: 'http://127.0.0.1:9/mcp',
    headers: { Authorization: `Bearer ${mcpSecret}` },
  }));
  await admin.getByRole('button', { name: 'Add server' }).click();
  const mcpRow = admin.locator('tbody tr', { hasText: 'docs' }).first();
  await mcpRow.waitFor();
  seen.mcpRow = await mcpRow.innerText();
  seen.mcpSecretOnPage = await admin.evaluate(
    (secret) => document.body.innerText.includes(secret) || [...document.querySelectorAll('input, textarea')].some((i) => i.value.includes(secret)),
    mcpSecret,
  );
  seen.unlabeled.push(...(await unlabeled(admin)));
  await shot(admin, 'mcp');

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

  for (const [hash, name] of [['#/pricing', 'pricing'], ['#/settings', 'settings']]) {
    await admin.goto(`${url}/${hash}`);
    await admin.locator('main h1').waitFor();
    await admin.waitForLoadState('networkidle');
    seen.unlabeled.push(...(await unlabeled(admin)));
    if (name === 'settings') seen.ssoSetBy = await admin.locator('dt:has-text("Set by") + dd').innerText();
  }

  // --- Editing through the console's forms -------------------------------------------------------
  // A team's budget and concurrency limit.
  await admin.goto(`${url}/#/teams`);
  await admin.getByRole('button', { name: 'Edit eng' }).click();
  const teamForm = admin.getByRole('form', { name: 'Edit team eng' });
  await teamForm.getByRole('button', { name: 'Add a budget' }).click();
  await teamForm.getByLabel('Budget (USD)').fill(edits.team_budget);
  await teamForm.getByLabel('Budget period').selectOption(edits.team_first_period);
  await teamForm.getByLabel('Calendar-aligned').uncheck();
  await teamForm.getByLabel('Requests in flight at once').fill(edits.team_concurrent);
  seen.unlabeled.push(...(await unlabeled(admin)));
  await shot(admin, 'team-edit');
  await teamForm.getByRole('button', { name: 'Save' }).click();
  // Back on the list, the team's new budget shows as a usage bar, and focus is back on the
  // button that opened the editor.
  await admin.locator('table:has(caption:text-is("Teams")) tbody tr', { hasText: 'eng' }).locator('[role="meter"]').first().waitFor();
  await teamForm.waitFor({ state: 'detached' });
  // Where focus is once it has left the page body (an editor that closed gives it back after
  // its list is redrawn, which may take a fetch); the body's text if it never does.
  const focused = async () => {
    await admin.waitForFunction(() => document.activeElement && document.activeElement !== document.body, null, { timeout: 5000 }).catch(() => {});
    return admin.evaluate(() => document.activeElement && (document.activeElement.getAttribute('aria-label') || document.activeElement.innerText));
  };
  seen.teamFocus = await focused();
  const teamBudgets = () => admin.evaluate(async () => (await (await fetch('/api/teams')).json()).teams.find((t) => t.name === 'eng').budgets);
  seen.teamBudgetsFirst = await teamBudgets();
  // The budget's period changed in a second edit: the console sends its id back, so the API
  // keeps the budget (and its spend) rather than making a new one.
  await admin.getByRole('button', { name: 'Edit eng' }).click();
  await teamForm.getByLabel('Budget period').selectOption(edits.team_period);
  await teamForm.getByRole('button', { name: 'Cancel' }).click();
  seen.teamCancelFocus = await focused();
  await admin.getByRole('button', { name: 'Edit eng' }).click();
  await teamForm.getByLabel('Budget period').selectOption(edits.team_period);
  await teamForm.getByRole('button', { name: 'Save' }).click();
  await teamForm.waitFor({ state: 'detached' });
  seen.teamBudgetsThen = await teamBudgets();
  await shot(admin, 'teams');

  // A key's limits: first two budgets with one period, which the API refuses; its error shows
  // next to the field it names. Then one budget and a rate limit, which it stores.
  await admin.goto(`${url}/#/keys`);
  await admin.getByRole('button', { name: 'Edit console-key' }).click();
  const keyForm = admin.getByRole('form', { name: 'Edit virtual key console-key' });
  for (const amount of [edits.key_budget, '1']) {
    await keyForm.getByRole('button', { name: 'Add a budget', exact: true }).click();
    await keyForm.getByLabel('Budget (USD)', { exact: true }).last().fill(amount);
    await keyForm.getByLabel('Budget period').last().selectOption(edits.key_period);
  }
  expectRefusal = true;
  await keyForm.getByRole('button', { name: 'Save' }).click();
  const note = keyForm.locator('.field-error');
  await note.waitFor();
  expectRefusal = false;
  const invalid = keyForm.locator('[aria-invalid="true"]');
  seen.badValue = {
    note: await note.innerText(),
    field: await note.getAttribute('data-field'),
    invalidPath: await invalid.getAttribute('data-path'),
    invalidCount: await invalid.count(),
    // The message describes the control it is about, and sits in the same budget row.
    describedBy: (await invalid.getAttribute('aria-describedby')) === (await note.getAttribute('id')),
    sameRow: await note.evaluate((n) => {
      const row = n.closest('.budget');
      return !!row && !!row.querySelector('[aria-invalid="true"]');
    }),
    alert: await keyForm.locator('[role="alert"]').innerText(),
  };
  await shot(admin, 'key-edit-error');
  await keyForm.getByRole('button', { name: 'Remove budget' }).last().click();
  await keyForm.getByLabel('Requests per window', { exact: true }).fill(edits.key_requests);
  await keyForm.getByLabel('Request window').selectOption(edits.key_request_window);
  await keyForm.getByLabel('Tokens per window', { exact: true }).fill(edits.key_tokens);
  await keyForm.getByLabel('Token window').selectOption(edits.key_token_window);
  // Content logging, in the same form: the key's next request shows its bodies in its detail.
  await keyForm.getByLabel('Request and response bodies').selectOption('on');
  await keyForm.getByLabel('Largest body kept (bytes)').fill(edits.content_bytes);
  seen.unlabeled.push(...(await unlabeled(admin)));
  await shot(admin, 'key-edit');
  await keyForm.getByRole('button', { name: 'Save' }).click();
  await keyForm.waitFor({ state: 'detached' });

  const recorded = await fetch(`${url}/v1/messages`, {
    method: 'POST',
    headers: { 'x-api-key': seen.keyValue, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
    body: JSON.stringify({ model: process.env.CONSOLE_MODEL, max_tokens: 16, messages: [{ role: 'user', content: edits.recorded_prompt }] }),
  });
  seen.recordedStatus = recorded.status;
  const recordedId = recorded.headers.get('request-id');
  seen.recordedAnswer = await recorded.text();
  // Its log arrives about a second after the request ends: the key's second row, newest first.
  await admin.goto(`${url}/#/logs`);
  const keyRows = admin.locator('tbody tr', { hasText: 'console-key' });
  for (let i = 0; i < 40 && (await keyRows.count()) < 2; i++) {
    await admin.waitForTimeout(500);
    await admin.getByRole('button', { name: 'Apply' }).click();
  }
  await keyRows.first().click();
  await admin.getByRole('heading', { name: /^Request / }).waitFor();
  seen.recordedDetailId = await admin.locator('h1 code').innerText();
  seen.recordedId = recordedId;
  await admin.getByRole('button', { name: 'Show recorded bodies' }).click();
  await admin.getByLabel('Request body').waitFor();
  seen.recordedRequest = await admin.getByLabel('Request body').innerText();
  seen.recordedResponse = await admin.getByLabel('Response body').innerText();
  seen.unlabeled.push(...(await unlabeled(admin)));
  await admin.getByRole('heading', { name: 'Recorded bodies' }).scrollIntoViewIfNeeded();
  await admin.evaluate(() => window.scrollBy(0, 300));
  await shot(admin, 'log-bodies');
  await admin.goto(`${url}/#/keys`);

  // The walkthrough's key (provider bedrock): its provider config's allowed models, the one
  // provider key it may use and a budget of its own, and an expiry.
  await admin.getByRole('button', { name: 'Edit engineering-team' }).click();
  const configForm = admin.getByRole('form', { name: 'Edit virtual key engineering-team' });
  await configForm.getByLabel('Allowed models').fill(edits.allowed_models.join('\n'));
  await configForm.getByLabel('bedrock-key').check();
  await configForm.getByText('Limits of this provider config').click();
  await configForm.getByRole('button', { name: 'Add a budget of this provider config' }).click();
  await configForm.getByLabel('Budget of this provider config (USD)').fill(edits.config_budget);
  await configForm.getByLabel('Budget period of this provider config').selectOption(edits.config_period);
  await configForm.getByLabel('Expires').fill(edits.expires_local);
  // A second budget with the same period, in the config's limits, which are then folded away:
  // the API's refusal opens them and focuses the control it names.
  await configForm.getByRole('button', { name: 'Add a budget of this provider config' }).click();
  await configForm.getByLabel('Budget of this provider config (USD)').last().fill('1');
  await configForm.getByLabel('Budget period of this provider config').last().selectOption(edits.config_period);
  await configForm.getByText('Limits of this provider config').click();
  const configLimits = configForm.locator('details');
  seen.configLimitsOpenBefore = await configLimits.evaluate((d) => d.open);
  expectRefusal = true;
  await configForm.getByRole('button', { name: 'Save' }).click();
  await configForm.locator('.field-error').waitFor();
  expectRefusal = false;
  seen.configError = {
    field: await configForm.locator('.field-error').getAttribute('data-field'),
    open: await configLimits.evaluate((d) => d.open),
    focusedPath: await admin.evaluate(() => document.activeElement && document.activeElement.dataset.path),
  };
  await configLimits.getByRole('button', { name: 'Remove budget' }).last().click();
  seen.unlabeled.push(...(await unlabeled(admin)));
  await shot(admin, 'key-provider-config');
  await configForm.getByRole('button', { name: 'Save' }).click();
  await configForm.waitFor({ state: 'detached' });
  seen.keyFocus = await focused();

  // A provider key: the stored literal secret of another key shows as the API returns it
  // (<redacted>) and nowhere on the page; that key is deleted (after a confirmation), and the
  // walkthrough's key gets a new weight.
  await admin.goto(`${url}/#/providers`);
  // The walkthrough's key tested against the Bedrock double through the data plane; a disabled
  // key offers no test (data planes do not load it).
  await admin.getByRole('button', { name: 'Test key bedrock-key of bedrock' }).click();
  const tested = admin.locator('.key-test', { hasText: /^(Works|Fails)/ });
  await tested.waitFor();
  seen.keyTest = await tested.innerText();
  seen.sealedTestButtons = await admin.getByRole('button', { name: 'Test key sealed-key of bedrock' }).count();
  await admin.getByRole('button', { name: 'Edit key sealed-key of bedrock' }).click();
  const sealedForm = admin.getByRole('form', { name: 'Edit key sealed-key of bedrock' });
  seen.sealedShown = {
    access_key: await sealedForm.getByLabel('AWS access key id').inputValue(),
    secret_key: await sealedForm.getByLabel('AWS secret access key').inputValue(),
  };
  seen.secretOnPage = await admin.evaluate(
    (secret) => document.body.innerText.includes(secret) || [...document.querySelectorAll('input, textarea')].some((i) => i.value.includes(secret)),
    process.env.CONSOLE_SECRET,
  );
  seen.unlabeled.push(...(await unlabeled(admin)));
  await admin.getByRole('button', { name: 'Delete key sealed-key of bedrock' }).click();
  await admin.locator('table:has(caption:text-is("Keys of bedrock")) tbody tr', { hasText: 'sealed-key' }).waitFor({ state: 'detached' });
  await admin.getByRole('button', { name: 'Edit key bedrock-key of bedrock' }).click();
  const pkForm = admin.getByRole('form', { name: 'Edit key bedrock-key of bedrock' });
  seen.walkthroughKeyShown = await pkForm.getByLabel('AWS secret access key').inputValue();
  await pkForm.getByLabel('Weight').fill(edits.provider_key_weight);
  await shot(admin, 'provider-key-edit');
  await pkForm.getByRole('button', { name: 'Save key' }).click();
  await pkForm.waitFor({ state: 'detached' });
  seen.providerKeyFocus = await focused();
  seen.providerKeyWeights = await admin.locator('table:has(caption:text-is("Keys of bedrock")) tbody tr td:nth-child(4)').allInnerTexts();

  // A price override: added, then edited.
  await admin.goto(`${url}/#/pricing`);
  await admin.getByRole('button', { name: 'Add an override' }).click();
  const priceForm = admin.getByRole('form', { name: 'New price override' });
  const price = edits.price;
  await priceForm.getByLabel('Provider kind').selectOption(price.provider);
  await priceForm.getByLabel('Model patterns').fill(price.models[0]);
  for (const [label, key] of [['Input', 'input'], ['Output', 'output'], ['Cache write 5m', 'cache_write_5m'], ['Cache write 1h', 'cache_write_1h'], ['Cache read', 'cache_read']]) {
    await priceForm.getByLabel(`${label} (USD / M tokens)`).fill(String(key === 'output' ? price.first_output : price[key]));
  }
  await priceForm.getByLabel('Source').fill(price.source);
  seen.unlabeled.push(...(await unlabeled(admin)));
  await priceForm.getByRole('button', { name: 'Add override' }).click();
  await admin.getByRole('button', { name: `Edit the override of ${price.models[0]}` }).click();
  const priceEdit = admin.getByRole('form', { name: 'Edit price override' });
  await priceEdit.getByLabel('Output (USD / M tokens)').fill(String(price.output));
  // A long-context tier with its threshold and one rate only: the API refuses the first missing
  // rate (left out, never sent as a $0 price), and the form shows which. Then the other rates.
  const lc = price.long_context;
  await priceEdit.getByText('Long-context tier').click();
  await priceEdit.getByLabel('Above input tokens').fill(String(lc.above_input_tokens));
  await priceEdit.getByLabel('Long context: Input').fill(String(lc.input));
  expectRefusal = true;
  await priceEdit.getByRole('button', { name: 'Save override' }).click();
  const priceNote = priceEdit.locator('.field-error');
  await priceNote.waitFor();
  expectRefusal = false;
  seen.missingRate = {
    field: await priceNote.getAttribute('data-field'),
    note: await priceNote.innerText(),
    invalidPath: await priceEdit.locator('[aria-invalid="true"]').getAttribute('data-path'),
    focusedPath: await admin.evaluate(() => document.activeElement && document.activeElement.dataset.path),
  };
  await shot(admin, 'pricing-missing-rate');
  for (const [label, key] of [['Output', 'output'], ['Cache write 5m', 'cache_write_5m'], ['Cache write 1h', 'cache_write_1h'], ['Cache read', 'cache_read']]) {
    await priceEdit.getByLabel(`Long context: ${label}`).fill(String(lc[key]));
  }
  await shot(admin, 'pricing-edit');
  await priceEdit.getByRole('button', { name: 'Save override' }).click();
  await priceEdit.waitFor({ state: 'detached' });
  // Focus is back on the Edit button that opened the form.
  seen.priceFocus = await focused();
  seen.overrideRows = await admin.locator('table:has(caption:text-is("Overrides")) tbody tr').allInnerTexts();

  // The group mappings: a role rule added to those the test set.
  await admin.goto(`${url}/#/settings`);
  const mappingsForm = admin.getByRole('form', { name: 'Group mappings' });
  await mappingsForm.getByRole('button', { name: 'Add a role rule' }).click();
  await mappingsForm.getByLabel('Group (role rule)').last().fill(edits.role_rule.group);
  await mappingsForm.getByLabel('Role', { exact: true }).last().selectOption(edits.role_rule.role);
  seen.unlabeled.push(...(await unlabeled(admin)));
  await shot(admin, 'settings');
  await mappingsForm.getByRole('button', { name: 'Save group mappings' }).click();
  await admin.locator('#toast', { hasText: 'Group mappings saved' }).waitFor();

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
  await member.locator('main tbody tr, main p.empty').first().waitFor();
  seen.memberKeys = await member.locator('tbody tr td:first-child').allInnerTexts();
  seen.memberCanCreate = await member.getByRole('button', { name: 'Create key' }).count();
  await member.goto(`${url}/#/logs`);
  await member.locator('main p.hint', { hasText: /^\d+ requests?/ }).waitFor();
  seen.memberLogRows = await member.locator('tbody tr').count();
  // The member's Jobs page: their own export, started, followed and downloaded with no call the
  // member may not make (a refused call is a console error).
  await member.goto(`${url}/#/jobs`);
  await member.getByRole('heading', { name: 'Jobs' }).waitFor();
  await member.getByRole('button', { name: 'Start export' }).click();
  const memberReady = member.locator('main p', { hasText: 'Export ready' }).getByRole('button', { name: 'Download' });
  await memberReady.waitFor();
  seen.memberCanCancel = await member.getByRole('button', { name: 'Cancel' }).count();
  const [memberExport] = await Promise.all([member.waitForEvent('download'), memberReady.click()]);
  seen.memberExportName = memberExport.suggestedFilename();
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
