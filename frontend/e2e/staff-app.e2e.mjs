// End-to-end: the built app in the machine's Chromium against the real API, PostgreSQL and Redis.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { launchBrowser, screenshot, seriousViolations } from './browser.mjs';
import { backendClient, practitionerWithSchedule, visitTypeResource } from './fhir.mjs';
import { startStack } from './stack.mjs';
import { signInAs } from './signin.mjs';

const RECEPTIONIST = 'desk-e2e';
const ADMIN = 'admin-e2e';
const tag = Math.random().toString(36).slice(2, 7);
const family = `Ångström${tag}`;
let stack;
let fhir;
let clinic;
let browser;
let page;
const secrets = {};

const PX = 1.2; // calendar pixels per minute (CalendarGrid PX_PER_MINUTE)

function tomorrow() {
  const date = new Date(Date.now() + 24 * 3600 * 1000);
  return date.toISOString().slice(0, 10);
}

/** Press on an element's middle, move by (dx, dy) in steps, release: a real pointer drag. */
async function dragBy(locator, dx, dy) {
  const box = await locator.boundingBox();
  const x = box.x + box.width / 2;
  const y = box.y + Math.min(box.height / 2, 8);
  await page.mouse.move(x, y);
  await page.mouse.down();
  await page.mouse.move(x + dx / 2, y + dy / 2, { steps: 4 });
  await page.mouse.move(x + dx, y + dy, { steps: 4 });
  await page.mouse.up();
}

async function expectAccessible(name) {
  const violations = await seriousViolations(page);
  assert.deepEqual(violations, [], `${name}: serious/critical axe-core violations`);
}

async function signIn(username) {
  await signInAs(page, stack.baseUrl, username, secrets);
}

describe('staff web app', { concurrency: false }, () => {
  before(async () => {
    stack = await startStack({
      users: [
        { username: RECEPTIONIST, role: 'receptionist' },
        { username: ADMIN, role: 'admin' },
      ],
    });
    fhir = await backendClient(stack);
    const checkUp = await fhir.create(visitTypeResource('check-up', 'Check-up', 20));
    clinic = {
      checkUp,
      lee: await practitionerWithSchedule(fhir, { given: 'Ada', family: 'Lee', visitType: checkUp }),
      wu: await practitionerWithSchedule(fhir, { given: 'Ben', family: 'Wu', visitType: checkUp }),
    };
    browser = await launchBrowser();
    page = await browser.context.newPage();
    page.setDefaultTimeout(10_000);
  });

  afterEach(async (t) => {
    // The page as each test left it, for review (and for finding out why one failed).
    if (page) await screenshot(page, `end-of-${t.name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}`).catch(() => undefined);
  });

  after(async () => {
    await browser?.close();
    await stack?.stop();
  });

  test('a receptionist signs in with PKCE and enrols in 2FA; the role is shown', async () => {
    await page.goto(`${stack.baseUrl}/`);
    await page.waitForURL(/\/signin/);
    await screenshot(page, '01-sign-in');
    await expectAccessible('sign-in');
    await signIn(RECEPTIONIST);
    assert.ok(secrets[RECEPTIONIST], 'the enrolment page showed the TOTP key');
    await page.getByTestId('user-role').first().waitFor();
    assert.equal(await page.getByTestId('user-role').first().textContent(), 'Receptionist');
  });

  test('signing out and in again asks for the TOTP code', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(/\/signin\?reason=signed-out/);
    await page.getByText('You are signed out.').waitFor();
    await signIn(RECEPTIONIST);
    await page.getByTestId('patient-search').waitFor();
  });

  test('register a patient, then see the duplicate warning for the same name and birth date', async () => {
    await page.goto(`${stack.baseUrl}/patients/new`);
    await page.getByRole('button', { name: 'Register patient' }).click();
    await page.getByText('Enter the given name.').waitFor(); // inline validation on submit
    await page.getByLabel('Given name(s)').fill('Zoë');
    await page.getByLabel('Family name').fill(family);
    await page.getByLabel('Sex').selectOption('female');
    await page.getByLabel('Date of birth').fill('1984-03-09');
    await page.getByLabel('Phone', { exact: true }).first().fill('+1 555 0100');
    await page.getByLabel('Email', { exact: true }).fill('not-an-email');
    await page.getByLabel('Preferred language').selectOption('zh');
    await page.getByRole('button', { name: 'Register patient' }).click();
    await page.getByText('Enter an email address like name@example.com.').waitFor();
    await page.getByLabel('Email', { exact: true }).fill('zoe@example.com');
    await page.getByRole('button', { name: 'Add an emergency contact' }).click();
    await page.getByLabel("Contact's name").fill('Li Wei');
    await page.getByLabel('Phone', { exact: true }).nth(1).fill('+1 555 0199');
    await page.getByLabel('Insurer (payer)').fill('Acme Health');
    await page.getByLabel('Member ID').fill(`M-${tag}`);
    // Allergies are clinical content, which a receptionist's role may not record.
    assert.equal(await page.getByRole('button', { name: 'Add an allergy' }).count(), 0);
    await page.getByLabel(/text message/).check();
    await screenshot(page, '02-registration');
    await expectAccessible('registration');
    await page.getByRole('button', { name: 'Register patient' }).click();
    await page.waitForURL(/\/patients\/[^/]+$/);
    await page.getByTestId('patient-header').getByText(`Zoë ${family}`).waitFor();
    await page.getByTestId('section-insurance').getByText('Acme Health').waitFor();
    await screenshot(page, '03-patient-summary');
    await expectAccessible('patient summary');

    await page.goto(`${stack.baseUrl}/patients/new`);
    await page.getByLabel('Given name(s)').fill('Zoë');
    await page.getByLabel('Family name').fill(family);
    await page.getByLabel('Sex').selectOption('female');
    await page.getByLabel('Date of birth').fill('1984-03-09');
    await page.getByRole('button', { name: 'Register patient' }).click();
    const warning = page.getByTestId('duplicate-warning');
    await warning.waitFor();
    assert.match(await warning.textContent(), new RegExp(`Zoë ${family}`));
    await screenshot(page, '04-duplicate-warning');
    await expectAccessible('duplicate warning');
  });

  test('find the patient by part of the name, accents ignored, and open them with the keyboard', async () => {
    await page.goto(`${stack.baseUrl}/patients`);
    const box = page.getByTestId('patient-search');
    await box.fill(`angstrom${tag.slice(0, 2)}`); // a part of the name, without its accent
    const results = page.getByTestId('patient-results');
    await results.getByText(`Zoë ${family}`).waitFor();
    await box.fill('');
    await box.pressSequentially('zoe', { delay: 30 });
    await results.getByText(`Zoë ${family}`).waitFor();
    await screenshot(page, '05-patient-search');
    await expectAccessible('patient search');
    await box.press('Enter');
    await page.waitForURL(/\/patients\/[^/]+$/);
    await page.getByTestId('patient-header').waitFor();
  });

  test('book from a free slot, drag to reschedule, see a conflict in words, resize, then cancel with a reason', async () => {
    const day = tomorrow();
    await page.goto(`${stack.baseUrl}/calendar?view=day&date=${day}`);
    const leeColumn = page.getByTestId(`column-${clinic.lee.schedule.id}-0`);
    await leeColumn.getByTestId('free-slot').first().waitFor();
    await screenshot(page, '07-calendar-day');
    await expectAccessible('calendar');
    // The free block starts at 08:00; 60 minutes further down is 09:00.
    await leeColumn.getByTestId('free-slot').first().click({ position: { x: 20, y: 60 * PX + 2 } });
    const dialog = page.getByRole('dialog');
    await dialog.getByText(/9:00/).waitFor();
    await dialog.getByTestId('booking-patient-search').fill(`angstrom${tag.slice(0, 2)}`);
    await dialog.getByRole('radio', { name: new RegExp(`Zoë ${family}`) }).check();
    await dialog.getByLabel('Notes').fill('First visit');
    await screenshot(page, '08-booking-dialog');
    await expectAccessible('booking dialog');
    await dialog.getByRole('button', { name: 'Book', exact: true }).click();
    await page.getByText('Booked.').waitFor();
    const block = leeColumn.getByTestId('appointment');
    await block.waitFor();
    const id = await block.getAttribute('data-appointment-id');
    let stored = await fhir.read('Appointment', id);
    assert.equal(stored.status, 'booked');
    assert.match(stored.start, new RegExp(`^${day}T09:00`));

    // Drag it one hour down: rescheduled to 10:00 on the server.
    await dragBy(block, 0, 60 * PX);
    await page.getByText(/Moved to/).waitFor();
    stored = await fhir.read('Appointment', id);
    assert.match(stored.start, new RegExp(`^${day}T10:00`));

    // Someone else has Dr Lee at 11:00: dragging there is refused by the server (409), said in words.
    const other = await fhir.create({ resourceType: 'Patient', name: [{ family: `Other${tag}`, given: ['Ann'] }] });
    await fhir.create({
      resourceType: 'Appointment',
      status: 'booked',
      start: `${day}T11:00:00Z`,
      end: `${day}T11:20:00Z`,
      participant: [
        { actor: { reference: `Patient/${other.id}` }, status: 'accepted' },
        { actor: { reference: `Practitioner/${clinic.lee.practitioner.id}` }, status: 'accepted' },
      ],
    });
    await page.reload();
    await leeColumn.getByTestId('appointment').nth(1).waitFor();
    const ours = leeColumn.locator(`[data-appointment-id="${id}"]`);
    await dragBy(ours, 0, 60 * PX);
    const alert = page.getByRole('alert').filter({ hasText: 'That time is already taken' });
    await alert.waitFor();
    assert.match(await alert.textContent(), /book|Booked|overlap|already/i);
    await screenshot(page, '09-calendar-conflict');
    stored = await fhir.read('Appointment', id);
    assert.match(stored.start, new RegExp(`^${day}T10:00`), 'the refused move left the appointment where it was');

    // Drag its lower edge 10 minutes down: 20 -> 30 minutes.
    await ours.waitFor();
    const handle = ours.getByTestId('resize-handle');
    await dragBy(handle, 0, 10 * PX);
    await page.getByText(/Moved to/).waitFor();
    stored = await fhir.read('Appointment', id);
    assert.equal(stored.minutesDuration ?? (Date.parse(stored.end) - Date.parse(stored.start)) / 60000, 30);

    // Drag it across to Dr Wu's column at the same time.
    const wuColumn = page.getByTestId(`column-${clinic.wu.schedule.id}-0`);
    const from = await ours.boundingBox();
    const to = await wuColumn.boundingBox();
    await dragBy(ours, to.x + to.width / 2 - (from.x + from.width / 2), 0);
    await wuColumn.locator(`[data-appointment-id="${id}"]`).waitFor();
    stored = await fhir.read('Appointment', id);
    const actors = stored.participant.map((p) => p.actor.reference);
    assert.ok(actors.includes(`Practitioner/${clinic.wu.practitioner.id}`));
    assert.ok(!actors.includes(`Practitioner/${clinic.lee.practitioner.id}`));

    // Cancel it with a reason.
    await wuColumn.locator(`[data-appointment-id="${id}"]`).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel appointment' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel the appointment' }).click();
    await page.getByText('Enter a reason.').waitFor();
    await page.getByRole('dialog').getByLabel('Reason for cancelling').fill('Patient called: unwell');
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel the appointment' }).click();
    await page.getByRole('dialog').waitFor({ state: 'detached' });
    await wuColumn.locator(`[data-appointment-id="${id}"]`).waitFor({ state: 'detached' });
    stored = await fhir.read('Appointment', id);
    assert.equal(stored.status, 'cancelled');
    assert.equal(stored.cancelationReason.text, 'Patient called: unwell');
  });

  test('a weekly series goes through $book: the same time every week, one linked series', async () => {
    const day = tomorrow();
    await page.goto(`${stack.baseUrl}/calendar?view=day&date=${day}`);
    const wuColumn = page.getByTestId(`column-${clinic.wu.schedule.id}-0`);
    await wuColumn.getByTestId('free-slot').first().waitFor();
    // The free block starts at 08:00; 480 minutes further down is 16:00.
    await wuColumn.getByTestId('free-slot').last().click({ position: { x: 20, y: 2 } });
    const dialog = page.getByRole('dialog');
    await dialog.getByTestId('booking-patient-search').fill(`angstrom${tag.slice(0, 2)}`);
    await dialog.getByRole('radio', { name: new RegExp(`Zoë ${family}`) }).check();
    await dialog.getByLabel('Repeat').selectOption('weekly');
    await dialog.getByLabel('Number of visits').fill('3');
    await dialog.getByRole('button', { name: 'Book', exact: true }).click();
    await page.getByText('3 of 3 visits booked.').waitFor();
    const found = await fhir.search(
      `Appointment?practitioner=Practitioner/${clinic.wu.practitioner.id}&status=booked&date=ge${day}&_sort=date`,
    );
    const series = (found.entry ?? []).map((e) => e.resource).filter((a) => (a.identifier ?? []).some((i) => i.system.endsWith('/appointment-series')));
    assert.equal(series.length, 3);
    const times = series.map((a) => a.start.slice(11));
    assert.deepEqual(times, [times[0], times[0], times[0]], 'the same time of day every week');
    const weeks = series.map((a) => Math.round((Date.parse(a.start) - Date.parse(series[0].start)) / (7 * 24 * 3600 * 1000)));
    assert.deepEqual(weeks, [0, 1, 2]);
  });

  test('week view with every practitioner, and the front desk list', async () => {
    await page.goto(`${stack.baseUrl}/calendar?view=week&date=${tomorrow()}`);
    await page.getByTestId('free-slot').first().waitFor();
    assert.ok((await page.getByTestId('column-header').count()) >= 14, 'two practitioners on seven days');
    await screenshot(page, '10-calendar-week');
    await expectAccessible('calendar week');
    await page.goto(`${stack.baseUrl}/today`);
    await page.getByRole('heading', { name: "Today's list" }).waitFor();
    await screenshot(page, '11-today');
    await expectAccessible('today');
  });

  test('on a tablet (768 px) the menu folds away and the screens still work', async () => {
    await page.setViewportSize({ width: 768, height: 1024 });
    try {
      await page.goto(`${stack.baseUrl}/patients`);
      const menu = page.getByRole('button', { name: 'Open the menu' });
      await menu.waitFor();
      await page.getByTestId('patient-search').fill(`angstrom${tag.slice(0, 2)}`);
      await page.getByTestId('patient-results').getByText(`Zoë ${family}`).waitFor();
      await screenshot(page, '14-tablet-search');
      await expectAccessible('tablet search');
      await menu.click();
      await page.getByRole('link', { name: 'Calendar', exact: true }).click();
      await page.getByTestId('calendar-grid').waitFor();
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= 768, `the page itself does not scroll sideways (${width} px); the calendar scrolls inside`);
      await screenshot(page, '15-tablet-calendar');
      await expectAccessible('tablet calendar');
    } finally {
      await page.setViewportSize({ width: 1280, height: 800 });
    }
  });

  test('an administrator records an allergy (badge on the summary) and changes working hours', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(/\/signin\?reason=signed-out/);
    await signIn(ADMIN);
    assert.equal(await page.getByTestId('user-role').first().textContent(), 'Administrator');
    await page.goto(`${stack.baseUrl}/patients/new`);
    await page.getByLabel('Given name(s)').fill('Kai');
    await page.getByLabel('Family name').fill(`Nakamura${tag}`);
    await page.getByLabel('Sex').selectOption('male');
    await page.getByLabel('Date of birth').fill('1990-07-01');
    await page.getByRole('button', { name: 'Add an allergy' }).click();
    await page.getByLabel('Substance').fill('Penicillin');
    await page.getByLabel('Risk').selectOption('high');
    await page.getByRole('button', { name: 'Register patient' }).click();
    await page.getByTestId('allergy-badge').waitFor();
    assert.match(await page.getByTestId('allergy-badge').textContent(), /Penicillin/);
    await page.getByTestId('section-allergies').getByText('Penicillin').waitFor();

    // Edit: new phone and insurance, one more allergy, saved together.
    await page.getByRole('link', { name: 'Edit details' }).click();
    await page.getByLabel('Phone', { exact: true }).fill('+1 555 0177');
    await page.getByLabel('Insurer (payer)').fill('Beta Mutual');
    await page.getByLabel('Member ID').fill(`B-${tag}`);
    await page.getByRole('button', { name: 'Add a newly known allergy' }).click();
    await page.getByLabel('Substance').fill('Latex');
    await page.getByRole('button', { name: 'Save changes' }).click();
    await page.getByTestId('section-insurance').getByText('Beta Mutual').waitFor();
    await page.getByTestId('allergy-badge').getByText(/Latex/).waitFor();

    // Edit again: the Penicillin allergy was recorded in error; the badge then names only Latex.
    await page.getByRole('link', { name: 'Edit details' }).click();
    await page.getByLabel('Penicillin: status').selectOption('entered-in-error');
    await screenshot(page, '12b-edit-allergy-status');
    await expectAccessible('patient edit');
    await page.getByRole('button', { name: 'Save changes' }).click();
    await page.getByTestId('allergy-badge').waitFor();
    await page.waitForFunction(() => !document.querySelector('[data-testid="allergy-badge"]')?.textContent?.includes('Penicillin'));
    assert.match(await page.getByTestId('allergy-badge').textContent(), /^Allergy: Latex$/);

    await page.goto(`${stack.baseUrl}/admin/availability`);
    await page.getByLabel('Practitioner').selectOption({ label: 'Ada Lee' });
    await page.getByLabel('To', { exact: true }).first().fill('12:00');
    await page.getByRole('button', { name: 'Add an absence' }).click();
    await page.getByLabel('Description').fill('Conference');
    await page.getByLabel('First day').fill('2027-01-04');
    await page.getByLabel('Last day').fill('2027-01-06');
    await screenshot(page, '13-availability');
    await expectAccessible('availability');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByText('Saved.').waitFor();
    const role = await fhir.read('PractitionerRole', clinic.lee.role.id);
    assert.equal(role.availableTime[0].availableEndTime, '12:00:00');
    assert.equal(role.notAvailable[0].description, 'Conference');
  });

  test('switch to Chinese: the choice is remembered after a reload', async () => {
    await page.getByTestId('language-switch').selectOption('zh-CN');
    await page.getByRole('link', { name: '患者', exact: true }).waitFor();
    await page.reload();
    await page.getByRole('link', { name: '日历', exact: true }).waitFor();
    await screenshot(page, '06-summary-zh');
    await page.getByTestId('language-switch').selectOption('en');
    await page.getByRole('link', { name: 'Calendar', exact: true }).waitFor();
  });

  test('the calendar in Chinese', async () => {
    await page.getByTestId('language-switch').selectOption('zh-CN');
    await page.goto(`${stack.baseUrl}/calendar?view=day&date=${tomorrow()}`);
    await page.getByRole('heading', { name: '日历' }).waitFor();
    await page.getByTestId('free-slot').first().waitFor();
    assert.match(await page.getByTestId('free-slot').first().getAttribute('aria-label'), /空闲时段/);
    assert.match(await page.getByTestId('calendar-legend').textContent(), /图例/);
    await screenshot(page, '12-calendar-zh');
    await expectAccessible('calendar in Chinese');
    await page.getByTestId('language-switch').selectOption('en');
  });

  test("after switching to Chinese, the server's sign-in pages are in Chinese too (ui_locales)", async () => {
    await page.getByTestId('language-switch').selectOption('zh-CN');
    await page.getByRole('button', { name: '退出登录' }).click();
    await page.waitForURL(/\/signin\?reason=signed-out/);
    const seen = {};
    await signInAs(page, stack.baseUrl, ADMIN, secrets, {
      onStep: async (step) => {
        const lang = await page.locator('html').getAttribute('lang');
        seen[step] = { lang, title: (await page.locator('h1').textContent()).trim() };
        if (step === 'login') {
          seen.login.username = (await page.locator('label[for="username"]').textContent()).trim();
          await screenshot(page, '16-server-sign-in-zh');
        }
      },
    });
    assert.deepEqual(seen.login, { lang: 'zh-CN', title: '登录', username: '用户名' });
    assert.deepEqual(seen.totp, { lang: 'zh-CN', title: '两步验证' });
    await page.getByRole('link', { name: '患者', exact: true }).waitFor();
    await page.getByTestId('language-switch').selectOption('en');
  });
});
