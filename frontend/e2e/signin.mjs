// Sign in through the server's own pages, as a person would: password, then 2FA enrolment (reading the
// key the page shows) or the TOTP step, then consent. `secrets` remembers each user's TOTP key. The pages
// may be in English or Chinese (they follow the app's language), so buttons are found by their form, not
// their words; `onStep(step)` may look at each page (its name is the form's `step`) before it is answered.
import { PASSWORD } from './stack.mjs';
import { totp } from './totp.mjs';

const submit = (page) => page.locator('form button[type="submit"]').last();

export async function signInAs(page, baseUrl, username, secrets, { onStep } = {}) {
  await page.goto(`${baseUrl}/`);
  await page.getByRole('button', { name: /Sign in|登录/ }).click();
  await page.locator('#username').waitFor();
  if (onStep) await onStep('login');
  await page.locator('#username').fill(username);
  await page.locator('#password').fill(PASSWORD);
  await submit(page).click();
  for (let step = 0; step < 6; step += 1) {
    await page.waitForLoadState('domcontentloaded');
    if (new URL(page.url()).pathname.startsWith('/patients')) return;
    const stepName = await page.locator('input[name="step"]').first().getAttribute('value').catch(() => null);
    if (stepName && onStep) await onStep(stepName);
    if (stepName === 'enroll') {
      secrets[username] = (await page.locator('code').first().textContent()).trim();
      await page.locator('#code').fill(totp(secrets[username]));
      await submit(page).click();
    } else if (stepName === 'continue') {
      await submit(page).click();
    } else if (stepName === 'totp') {
      // A code is single-use: take the next period's (the server accepts one step of clock drift).
      await page.locator('#code').fill(totp(secrets[username], Date.now() + 30_000));
      await submit(page).click();
    } else if (stepName === 'consent') {
      await page.locator('button[name="decision"][value="approve"]').click();
    } else {
      await page.waitForURL(/\/patients/, { timeout: 10_000 });
      return;
    }
  }
  await page.waitForURL(/\/patients/, { timeout: 10_000 });
}
