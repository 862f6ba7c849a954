import { createContext, useContext, useMemo, type ReactNode } from 'react';
import { FhirClient, type TokenSource } from './client';

const FhirContext = createContext<FhirClient | null>(null);

export function FhirProvider({
  baseUrl,
  getToken,
  onUnauthorized,
  children,
}: {
  baseUrl: string;
  getToken: TokenSource;
  onUnauthorized?: () => void;
  children: ReactNode;
}) {
  const client = useMemo(
    () => new FhirClient({ baseUrl, getToken, onUnauthorized }),
    [baseUrl, getToken, onUnauthorized],
  );
  return <FhirContext.Provider value={client}>{children}</FhirContext.Provider>;
}

export function useFhirClient(): FhirClient {
  const client = useContext(FhirContext);
  if (!client) throw new Error('useFhirClient outside FhirProvider');
  return client;
}
