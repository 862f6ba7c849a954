import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import i18n, { setLanguage } from '../i18n';
import { beginSignIn, CLIENT_ID, serverLogoutUrl } from './oauth';
import { restoreLocation, stubLocation } from '../test/location';
import { s256Challenge } from './pkce';

let assigned: string[];

beforeEach(() => {
  assigned = stubLocation();
  sessionStorage.clear();
});

afterEach(() => {
  restoreLocation();
  setLanguage('en');
});

function query(url: string): URLSearchParams {
  expect(url.startsWith('/oauth2/authorize?') || url.startsWith('/oauth2/logout?')).toBe(true);
  return new URLSearchParams(url.slice(url.indexOf('?') + 1));
}

describe('beginSignIn', () => {
  it('asks the server for its pages in the chosen language (ui_locales), with PKCE and state', async () => {
    await beginSignIn('/calendar', 'zh-CN');
    expect(assigned).toHaveLength(1);
    const params = query(assigned[0] ?? '');
    expect(params.get('ui_locales')).toBe('zh-CN');
    expect(params.get('response_type')).toBe('code');
    expect(params.get('client_id')).toBe(CLIENT_ID);
    expect(params.get('redirect_uri')).toBe('https://pms.example/callback');
    expect(params.get('aud')).toBe('https://pms.example/fhir');
    expect(params.get('code_challenge_method')).toBe('S256');
    const pending = JSON.parse(sessionStorage.getItem('pms.oauth.pending') ?? '{}');
    expect(params.get('state')).toBe(pending.state);
    expect(params.get('code_challenge')).toBe(await s256Challenge(pending.verifier));
    expect(pending.returnTo).toBe('/calendar');
  });

  it('follows the language switch: English, then 简体中文', async () => {
    setLanguage('en');
    await beginSignIn('/', i18n.language);
    setLanguage('zh-CN');
    await beginSignIn('/', i18n.language);
    expect(assigned.map((url) => query(url).get('ui_locales'))).toEqual(['en', 'zh-CN']);
  });
});

describe('serverLogoutUrl', () => {
  it('carries the language too, for the server signed-out page', () => {
    const params = query(serverLogoutUrl('idle', 'zh-CN'));
    expect(params.get('ui_locales')).toBe('zh-CN');
    expect(params.get('state')).toBe('idle');
    expect(params.get('post_logout_redirect_uri')).toBe('https://pms.example/callback');
  });
});
