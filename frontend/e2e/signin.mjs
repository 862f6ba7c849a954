// Sign in through the server's own pages, as a person would: password, then 2FA enrolment (reading the
// key the page shows) or the TOTP step, then consent. `secrets` remembers each user's TOTP key.
import { PASSWORD } from './stack.mjs';
import { totp } from './totp.mjs';

export async function signInAs(page, baseUrl, username, secrets) {
  await page.goto(`${baseUrl}/`);
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

