import { act, renderHook, waitFor } from '@testing-library/react';
import type { ReactNode } from 'react';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { restoreLocation, stubLocation } from '../test/location';
import { SessionProvider, useSession } from './session';

let assigned: string[];

beforeEach(() => {
  assigned = stubLocation({ pathname: '/today', search: '' });
  sessionStorage.clear();
});

afterEach(restoreLocation);

describe('SessionProvider', () => {
  it("signs in with the app's language at that moment as ui_locales", async () => {
    let language = 'en';
    const wrapper = ({ children }: { children: ReactNode }) => (
      <SessionProvider language={() => language}>{children}</SessionProvider>
    );
    const { result } = renderHook(() => useSession(), { wrapper });
    await waitFor(() => expect(result.current.ready).toBe(true));
    language = 'zh-CN'; // the user switched to 中文 before signing in
    await act(() => result.current.signIn());
    expect(assigned).toHaveLength(1);
    const params = new URLSearchParams((assigned[0] ?? '').split('?')[1]);
    expect(params.get('ui_locales')).toBe('zh-CN');
    expect(JSON.parse(sessionStorage.getItem('pms.oauth.pending') ?? '{}').returnTo).toBe('/today');
  });
});
