// End-to-end: the built app in the machine's Chromium against the real API, PostgreSQL and Redis.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { launchBrowser, screenshot, seriousViolations } from './browser.mjs';
import { PASSWORD, startStack } from './stack.mjs';
import { totp } from './totp.mjs';

const RECEPTIONIST = 'desk-e2e';
const ADMIN = 'admin-e2e';
const tag = Math.random().toString(36).slice(2, 7);
const family = `Ångström${tag}`;
let stack;
let browser;
let page;
const secrets = {};

async function expectAccessible(name) {
  const violations = await seriousViolations(page);
  assert.deepEqual(violations, [], `${name}: serious/critical axe-core violations`);
}

/** The server's sign-in pages: password, then 2FA enrolment (first time) or the TOTP step, then consent. */
async function signIn(username) {
  await page.goto(`${stack.baseUrl}/`);
  await page.getByRole('button', { name: /Sign in|登录/ }).click();
  await page.locator('#username').fill(username);
  await page.locator('#password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  for (let step = 0; step < 6; step += 1) {
    await page.waitForLoadState('domcontentloaded');
    if (new URL(page.url()).pathname.startsWith('/patients')) return;
    const stepName = await page.locator('input[name="step"]').first().getAttribute('value').catch(() => null);
    if (stepName === 'enroll') {
      secrets[username] = (await page.locator('code').first().textContent()).trim();
      await page.locator('#code').fill(totp(secrets[username]));
      await page.getByRole('button', { name: /Turn on/ }).click();
    } else if (stepName === 'continue') {
      await page.getByRole('button', { name: /continue/ }).click();
    } else if (stepName === 'totp') {
      // A code is single-use: take the next period's (the server accepts one step of clock drift).
      await page.locator('#code').fill(totp(secrets[username], Date.now() + 30_000));
      await page.getByRole('button', { name: 'Verify' }).click();
    } else if (stepName === 'consent') {
      await page.getByRole('button', { name: 'Allow' }).click();
    } else {
      await page.waitForURL(/\/patients/, { timeout: 10_000 });
      return;
    }
  }
  await page.waitForURL(/\/patients/, { timeout: 10_000 });
}

describe('staff web app', { concurrency: false }, () => {
  before(async () => {
    stack = await startStack({
      users: [
        { username: RECEPTIONIST, role: 'receptionist' },
        { username: ADMIN, role: 'admin' },
      ],
    });
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

  test('switch to Chinese: the choice is remembered after a reload', async () => {
    await page.getByTestId('language-switch').selectOption('zh-CN');
    await page.getByRole('link', { name: '患者', exact: true }).waitFor();
    await page.reload();
    await page.getByRole('link', { name: '日历', exact: true }).waitFor();
    await screenshot(page, '06-summary-zh');
    await page.getByTestId('language-switch').selectOption('en');
    await page.getByRole('link', { name: 'Calendar', exact: true }).waitFor();
  });
});
