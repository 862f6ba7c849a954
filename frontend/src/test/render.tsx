import { MantineProvider } from '@mantine/core';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { render } from '@testing-library/react';
import type { ReactElement, ReactNode } from 'react';
import { MemoryRouter } from 'react-router-dom';
import { FhirProvider } from '../fhir/context';
import '../i18n';

/** Render with the app's providers; FHIR calls go to `fetchImpl` (a stub standing in for the network). */
export function renderWithApp(ui: ReactElement, { fetchImpl }: { fetchImpl?: typeof fetch } = {}) {
  return render(ui, { wrapper: appWrapper(fetchImpl) });
}

export function appWrapper(fetchImpl?: typeof fetch) {
  const queries = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  const Wrapper = ({ children }: { children: ReactNode }) => (
    <MantineProvider>
      <QueryClientProvider client={queries}>
        <MemoryRouter>
          <FhirProvider baseUrl="http://test/fhir" getToken={getToken} fetchImpl={fetchImpl}>
            {children}
          </FhirProvider>
        </MemoryRouter>
      </QueryClientProvider>
    </MantineProvider>
  );
  return Wrapper;
}

const getToken = async () => 'token-1';

export function jsonResponse(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/fhir+json' } });
}
