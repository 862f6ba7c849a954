import { randomToken, s256Challenge } from './pkce';

// The staff app is a SMART public client of the server it is served from (authorization code + PKCE).
export const CLIENT_ID: string = import.meta.env.VITE_PMS_CLIENT_ID ?? 'pms-staff-app';
export const SCOPES = 'openid fhirUser online_access user/*.*';
const PENDING_KEY = 'pms.oauth.pending';

export interface TokenSet {
  accessToken: string;
  refreshToken: string | null;
  expiresAt: number; // epoch ms
}

export interface UserInfo {
  sub: string;
  preferred_username: string;
  roles: string[];
  fhirUser?: string;
}

export function origin(): string {
  return window.location.origin;
}

export function redirectUri(): string {
  return `${origin()}/callback`;
}

export function fhirBase(): string {
  return `${origin()}/fhir`;
}

/**
 * Send the browser to the server's sign-in (password, then the TOTP step) with a fresh PKCE pair. The
 * server's pages follow `ui_locales` (OpenID Connect Core §3.1.2.1): the app's current language.
 */
export async function beginSignIn(returnTo: string, uiLocale: string): Promise<void> {
  const verifier = randomToken(48);
  const state = randomToken(16);
  sessionStorage.setItem(PENDING_KEY, JSON.stringify({ verifier, state, returnTo }));
  const params = new URLSearchParams({
    response_type: 'code',
    client_id: CLIENT_ID,
    redirect_uri: redirectUri(),
    scope: SCOPES,
    state,
    aud: fhirBase(),
    code_challenge: await s256Challenge(verifier),
    code_challenge_method: 'S256',
    ui_locales: uiLocale,
  });
  window.location.assign(`/oauth2/authorize?${params.toString()}`);
}

export class SignInError extends Error {}

function tokenSet(body: { access_token: string; refresh_token?: string; expires_in?: number }): TokenSet {
  return {
    accessToken: body.access_token,
    refreshToken: body.refresh_token ?? null,
    expiresAt: Date.now() + (body.expires_in ?? 300) * 1000,
  };
}

async function tokenRequest(form: Record<string, string>): Promise<TokenSet> {
  const response = await fetch('/oauth2/token', {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
  });
  const body = (await response.json().catch(() => ({}))) as Record<string, string>;
  if (!response.ok || !body.access_token) {
    throw new SignInError(body.error_description ?? body.error ?? `token request failed (${response.status})`);
  }
  return tokenSet(body as unknown as { access_token: string; refresh_token?: string; expires_in?: number });
}

/** Back from the server with `code` and `state`: check the state, redeem the code with the verifier. */
export async function completeSignIn(search: string): Promise<{ tokens: TokenSet; returnTo: string }> {
  const params = new URLSearchParams(search);
  const pending = JSON.parse(sessionStorage.getItem(PENDING_KEY) ?? 'null') as
    | { verifier: string; state: string; returnTo: string }
    | null;
  sessionStorage.removeItem(PENDING_KEY);
  if (params.get('error')) throw new SignInError(params.get('error_description') ?? params.get('error') ?? '');
  const code = params.get('code');
  if (!pending || !code || params.get('state') !== pending.state) {
    throw new SignInError('The sign-in response does not match this browser tab.');
  }
  const tokens = await tokenRequest({
    grant_type: 'authorization_code',
    code,
    redirect_uri: redirectUri(),
    client_id: CLIENT_ID,
    code_verifier: pending.verifier,
  });
  return { tokens, returnTo: pending.returnTo || '/' };
}

export function refreshTokens(refreshToken: string): Promise<TokenSet> {
  return tokenRequest({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: CLIENT_ID });
}

export async function fetchUserInfo(accessToken: string): Promise<UserInfo> {
  const response = await fetch('/oauth2/userinfo', { headers: { Authorization: `Bearer ${accessToken}` } });
  if (!response.ok) throw new SignInError(`userinfo failed (${response.status})`);
  return (await response.json()) as UserInfo;
}

export async function revoke(token: string): Promise<void> {
  await fetch('/oauth2/revoke', {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token, client_id: CLIENT_ID }).toString(),
  }).catch(() => undefined);
}

/** End the server's sign-in session too (its cookie), then come back to the app's signed-out page. */
export function serverLogoutUrl(reason: 'signed-out' | 'idle', uiLocale: string): string {
  const params = new URLSearchParams({
    client_id: CLIENT_ID,
    post_logout_redirect_uri: redirectUri(),
    state: reason,
    ui_locales: uiLocale, // OpenID Connect RP-Initiated Logout §2, should the server show its own page
  });
  return `/oauth2/logout?${params.toString()}`;
}
