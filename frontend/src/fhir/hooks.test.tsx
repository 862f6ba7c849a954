import { act, renderHook, waitFor } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import { usePatientSearch } from '../features/patients/usePatientSearch';
import { appWrapper, jsonResponse } from '../test/render';
import { usePagedSearch } from './hooks';

function page(ids: string[], links: Record<string, string>) {
  return {
    resourceType: 'Bundle',
    type: 'searchset',
    link: Object.entries(links).map(([relation, url]) => ({ relation, url })),
    entry: ids.map((id) => ({ resource: { resourceType: 'Patient', id }, search: { mode: 'match' } })),
  };
}

describe('usePagedSearch', () => {
  it('follows the next and previous links of the server', async () => {
    const pages: Record<string, unknown> = {
      'http://test/fhir/Patient?family=chen&_count=2': page(['a', 'b'], { next: 'http://test/fhir/Patient?cursor=2' }),
      'http://test/fhir/Patient?cursor=2': page(['c'], { previous: 'http://test/fhir/Patient?family=chen&_count=2' }),
    };
    const fetchImpl = vi.fn(async (url: string | URL | Request) => jsonResponse(pages[String(url)] ?? {}, pages[String(url)] ? 200 : 404));
    const { result } = renderHook(() => usePagedSearch('Patient', { family: 'chen', _count: '2' }), { wrapper: appWrapper(fetchImpl as typeof fetch) });
    await waitFor(() => expect(result.current.items.map((p) => p.id)).toEqual(['a', 'b']));
    expect(result.current.hasPrevious).toBe(false);
    act(() => result.current.nextPage());
    await waitFor(() => expect(result.current.items.map((p) => p.id)).toEqual(['c']));
    expect(result.current.pageNumber).toBe(2);
    expect(result.current.hasNext).toBe(false);
    act(() => result.current.previousPage());
    await waitFor(() => expect(result.current.items.map((p) => p.id)).toEqual(['a', 'b']));
  });
});

describe('usePatientSearch', () => {
  it('waits for typing to pause, runs the searches together and merges them without duplicates', async () => {
    const fetchImpl = vi.fn(async (url: string | URL | Request) => {
      const query = new URL(String(url)).searchParams;
      if (query.get('identifier')) return jsonResponse(page(['x'], {}));
      return jsonResponse(page(['x', 'y'], { next: 'http://test/fhir/Patient?cursor=n' }));
    });
    const { result, rerender } = renderHook(({ text }) => usePatientSearch(text), {
      wrapper: appWrapper(fetchImpl as typeof fetch),
      initialProps: { text: 'c' },
    });
    rerender({ text: 'ch' });
    rerender({ text: 'chen' });
    await waitFor(() => expect(result.current.patients.map((p) => p.id)).toEqual(['x', 'y']));
    // Only the last text was searched: one identifier and one name query.
    expect(fetchImpl).toHaveBeenCalledTimes(2);
    expect(result.current.hasMore).toBe(true);
  });
});
