import { createContext, useContext, useMemo, type ReactNode } from 'react';
import { FhirClient, type TokenSource } from './client';

const FhirContext = createContext<FhirClient | null>(null);

export function FhirProvider({
  baseUrl,
  getToken,
  onUnauthorized,
  fetchImpl,
  children,
}: {
  baseUrl: string;
  getToken: TokenSource;
  onUnauthorized?: () => void;
  /** Tests hand in a stub; the app uses the browser's fetch. */
  fetchImpl?: typeof fetch;
  children: ReactNode;
}) {
  const client = useMemo(
    () => new FhirClient({ baseUrl, getToken, onUnauthorized, fetchImpl }),
    [baseUrl, getToken, onUnauthorized, fetchImpl],
  );
  return <FhirContext.Provider value={client}>{children}</FhirContext.Provider>;
}

export function useFhirClient(): FhirClient {
  const client = useContext(FhirContext);
  if (!client) throw new Error('useFhirClient outside FhirProvider');
  return client;
}
