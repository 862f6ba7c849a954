import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from 'react';
import {
  beginSignIn,
  fetchUserInfo,
  refreshTokens,
  revoke,
  serverLogoutUrl,
  type TokenSet,
  type UserInfo,
} from './oauth';

const TOKENS_KEY = 'pms.tokens';
const REFRESH_MARGIN_MS = 30_000;

export interface Session {
  user: UserInfo | null;
  ready: boolean;
  signIn: (returnTo?: string) => Promise<void>;
  signOut: (reason?: 'signed-out' | 'idle') => Promise<void>;
  accept: (tokens: TokenSet) => Promise<void>;
  getToken: () => Promise<string | null>;
}

const SessionContext = createContext<Session | null>(null);

function loadTokens(): TokenSet | null {
  try {
    return JSON.parse(sessionStorage.getItem(TOKENS_KEY) ?? 'null') as TokenSet | null;
  } catch {
    return null;
  }
}

function saveTokens(tokens: TokenSet | null): void {
  if (tokens) sessionStorage.setItem(TOKENS_KEY, JSON.stringify(tokens));
  else sessionStorage.removeItem(TOKENS_KEY);
}

/** Tokens live in this tab's sessionStorage only; the access token is refreshed shortly before it expires. */
export function SessionProvider({ children, language }: { children: ReactNode; language: () => string }) {
  const tokens = useRef<TokenSet | null>(loadTokens());
  const refreshing = useRef<Promise<string | null> | null>(null);
  const [user, setUser] = useState<UserInfo | null>(null);
  const [ready, setReady] = useState(false);

  const clear = useCallback(() => {
    tokens.current = null;
    saveTokens(null);
    setUser(null);
  }, []);

  const getToken = useCallback(async (): Promise<string | null> => {
    const current = tokens.current;
    if (!current) return null;
    if (current.expiresAt - Date.now() > REFRESH_MARGIN_MS || !current.refreshToken) return current.accessToken;
    refreshing.current ??= refreshTokens(current.refreshToken)
      .then((fresh) => {
        tokens.current = fresh;
        saveTokens(fresh);
        return fresh.accessToken;
      })
      .catch(() => {
        clear();
        return null;
      })
      .finally(() => {
        refreshing.current = null;
      });
    return refreshing.current;
  }, [clear]);

  const accept = useCallback(async (fresh: TokenSet) => {
    tokens.current = fresh;
    saveTokens(fresh);
    setUser(await fetchUserInfo(fresh.accessToken));
  }, []);

  useEffect(() => {
    let cancelled = false;
    (async () => {
      const token = await getToken();
      if (token) {
        try {
          const info = await fetchUserInfo(token);
          if (!cancelled) setUser(info);
        } catch {
          if (!cancelled) clear();
        }
      }
      if (!cancelled) setReady(true);
    })();
    return () => {
      cancelled = true;
    };
  }, [clear, getToken]);

  const signOut = useCallback(
    async (reason: 'signed-out' | 'idle' = 'signed-out') => {
      const current = tokens.current;
      // Forget the tokens now, but keep the screen until the browser leaves for the server's sign-out
      // (clearing the user here would flash the sign-in page and race the redirect).
      tokens.current = null;
      saveTokens(null);
      if (current?.refreshToken) await revoke(current.refreshToken);
      if (current) await revoke(current.accessToken);
      window.location.assign(serverLogoutUrl(reason, language()));
    },
    [language],
  );

  const signIn = useCallback(
    (returnTo = window.location.pathname + window.location.search) => beginSignIn(returnTo, language()),
    [language],
  );

  const value = useMemo<Session>(
    () => ({ user, ready, signIn, signOut, accept, getToken }),
    [user, ready, signIn, signOut, accept, getToken],
  );
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error('useSession outside SessionProvider');
  return session;
}
