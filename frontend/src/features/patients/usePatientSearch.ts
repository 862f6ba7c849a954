import { keepPreviousData, useQuery } from '@tanstack/react-query';
import { useEffect, useState } from 'react';
import { linkOf, matches } from '../../fhir/client';
import { useFhirClient } from '../../fhir/context';
import { patientQueries } from '../../fhir/patientSearch';
import type { Bundle, Patient } from '../../fhir/types';

export const SEARCH_DEBOUNCE_MS = 150;

export function useDebounced<T>(value: T, delayMs: number): T {
  const [debounced, setDebounced] = useState(value);
  useEffect(() => {
    const timer = window.setTimeout(() => setDebounced(value), delayMs);
    return () => window.clearTimeout(timer);
  }, [value, delayMs]);
  return debounced;
}

function sortKey(patient: Patient): string {
  const name = patient.name?.[0];
  return `${name?.family ?? ''} ${(name?.given ?? []).join(' ')}`.toLowerCase();
}

/**
 * The matches of every search, each patient once; each batch (the first pages, then each "show more")
 * sorted by family then given name and appended, so what is on screen never moves.
 */
function merge(batches: Bundle<Patient>[][]): Patient[] {
  const seen = new Set<string>();
  const patients: Patient[] = [];
  for (const batch of batches) {
    const fresh: Patient[] = [];
    for (const patient of batch.flatMap((bundle) => matches(bundle))) {
      if (patient.id && !seen.has(patient.id)) {
        seen.add(patient.id);
        fresh.push(patient);
      }
    }
    patients.push(...fresh.sort((a, b) => sortKey(a).localeCompare(sortKey(b))));
  }
  return patients;
}

/**
 * Results as you type: the searches for the (debounced) text run in parallel and are merged without
 * duplicates; `pages` are the paging links followed so far ("show more").
 */
export function usePatientSearch(text: string) {
  const client = useFhirClient();
  const term = useDebounced(text.trim(), SEARCH_DEBOUNCE_MS);
  const [more, setMore] = useState<{ term: string; links: string[][] }>({ term, links: [] });
  const pages = more.term === term ? more.links : [];
  const query = useQuery({
    queryKey: ['patient-search', term, pages],
    enabled: patientQueries(term).length > 0,
    placeholderData: keepPreviousData,
    queryFn: async ({ signal }) => {
      // `signal` aborts the requests when the text changes before they answer.
      const batches = await Promise.all([
        Promise.all(patientQueries(term).map((q) => client.page<Patient>(`Patient?${q}`, signal))),
        ...pages.map((links) => Promise.all(links.map((url) => client.page<Patient>(url, signal)))),
      ]);
      const lastBatch = batches.at(-1) ?? [];
      return { patients: merge(batches), nextLinks: lastBatch.flatMap((b) => linkOf(b, 'next') ?? []) };
    },
  });
  const searching = term !== text.trim() || query.isFetching;
  return {
    term,
    /** The text whose results are on screen (undefined while older results stand in for new ones). */
    shownTerm: query.data && !query.isPlaceholderData && !query.isFetching ? term : undefined,
    active: patientQueries(term).length > 0,
    patients: query.data?.patients ?? [],
    hasMore: (query.data?.nextLinks.length ?? 0) > 0,
    showMore: () => setMore({ term, links: [...pages, query.data?.nextLinks ?? []] }),
    searching,
    error: query.error,
    isPending: query.isPending,
  };
}
