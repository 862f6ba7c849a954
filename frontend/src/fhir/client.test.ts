import { describe, expect, it, vi } from 'vitest';
import { jsonResponse } from '../test/render';
import { FhirClient, FhirError, linkOf, matches, outcomeText } from './client';
import type { Bundle, Patient } from './types';

function clientWith(fetchImpl: typeof fetch, onUnauthorized = vi.fn()) {
  return new FhirClient({ baseUrl: 'http://pms/fhir', getToken: async () => 'abc', fetchImpl, onUnauthorized });
}

describe('FhirClient', () => {
  it('sends the bearer token and FHIR JSON to the FHIR base', async () => {
    const fetchImpl = vi.fn(async () => jsonResponse({ resourceType: 'Patient', id: '1' }));
    const patient = await clientWith(fetchImpl).read<Patient>('Patient', '1');
    expect(patient.id).toBe('1');
    const [url, init] = fetchImpl.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe('http://pms/fhir/Patient/1');
    expect((init.headers as Record<string, string>).Authorization).toBe('Bearer abc');
    expect((init.headers as Record<string, string>).Accept).toBe('application/fhir+json');
  });

  it('turns an OperationOutcome into a readable FhirError', async () => {
    const outcome = {
      resourceType: 'OperationOutcome',
      issue: [{ severity: 'error', code: 'conflict', diagnostics: 'Dr Lee is already booked 09:00-09:30', expression: ['Appointment.start'] }],
    };
    const fetchImpl = vi.fn(async () => jsonResponse(outcome, 409));
    const error = await clientWith(fetchImpl).create({ resourceType: 'Appointment' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FhirError);
    expect((error as FhirError).status).toBe(409);
    expect((error as FhirError).message).toBe('Dr Lee is already booked 09:00-09:30 (Appointment.start)');
  });

  it('reports 401 so the app can sign in again', async () => {
    const onUnauthorized = vi.fn();
    const fetchImpl = vi.fn(async () => jsonResponse({ error: 'invalid_token', error_description: 'expired' }, 401));
    await expect(clientWith(fetchImpl, onUnauthorized).search('Patient', { name: 'x' })).rejects.toThrow('expired');
    expect(onUnauthorized).toHaveBeenCalledOnce();
  });

  it('follows paging links exactly as the server wrote them', async () => {
    const fetchImpl = vi.fn(async () => jsonResponse({ resourceType: 'Bundle', type: 'searchset' }));
    await clientWith(fetchImpl).page('http://pms/fhir/Patient?_cursor=xyz');
    expect((fetchImpl.mock.calls[0] as unknown as [string])[0]).toBe('http://pms/fhir/Patient?_cursor=xyz');
  });

  it('sends If-Match on update so a concurrent change is refused, not overwritten', async () => {
    const fetchImpl = vi.fn(async () => jsonResponse({ resourceType: 'Patient', id: '7' }));
    await clientWith(fetchImpl).update({ resourceType: 'Patient', id: '7', meta: { versionId: '3' } });
    const [, init] = fetchImpl.mock.calls[0] as unknown as [string, RequestInit];
    expect(init.method).toBe('PUT');
    expect((init.headers as Record<string, string>)['If-Match']).toBe('W/"3"');
  });
});

describe('bundle helpers', () => {
  const bundle: Bundle = {
    resourceType: 'Bundle',
    type: 'searchset',
    link: [{ relation: 'next', url: 'http://pms/fhir/Patient?page=2' }],
    entry: [
      { resource: { resourceType: 'Patient', id: 'a' }, search: { mode: 'match' } },
      { resource: { resourceType: 'Coverage', id: 'c' }, search: { mode: 'include' } },
    ],
  };
  it('separates matches from included resources and finds links', () => {
    expect(matches(bundle).map((r) => r.id)).toEqual(['a']);
    expect(linkOf(bundle, 'next')).toBe('http://pms/fhir/Patient?page=2');
    expect(linkOf(bundle, 'previous')).toBeUndefined();
  });
  it('describes an outcome with details before diagnostics', () => {
    expect(outcomeText({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'x', details: { text: 'Nice words' }, diagnostics: 'raw' }] })).toBe('Nice words');
  });
});
