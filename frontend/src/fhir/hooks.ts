import { keepPreviousData, useQuery } from '@tanstack/react-query';
import { useState } from 'react';
import { linkOf, matches } from './client';
import { useFhirClient } from './context';
import type { Bundle, Resource } from './types';

export function useResource<T extends Resource>(type: string, id: string | undefined) {
  const client = useFhirClient();
  return useQuery({
    queryKey: [type, id],
    queryFn: () => client.read<T>(type, id as string),
    enabled: Boolean(id),
  });
}

/** One search, followed page by page through the Bundle's own `next` / `previous` links. */
export function usePagedSearch<T extends Resource>(type: string, params: Record<string, string> | null) {
  const client = useFhirClient();
  const first = params ? `${type}?${new URLSearchParams(params).toString()}` : null;
  const [page, setPage] = useState<{ first: string | null; url: string | null }>({ first, url: first });
  const url = page.first === first ? page.url : first; // new criteria start again at page one
  const [pageNumber, setPageNumber] = useState(1);
  const query = useQuery({
    queryKey: ['search', url],
    queryFn: () => client.page<T>(url as string),
    enabled: Boolean(url),
    placeholderData: keepPreviousData,
  });
  const bundle: Bundle<T> | undefined = query.data;
  const next = linkOf(bundle, 'next');
  const previous = linkOf(bundle, 'previous') ?? linkOf(bundle, 'prev');
  const go = (target: string | undefined, delta: number) => {
    if (!target) return;
    setPage({ first, url: target });
    setPageNumber((n) => (page.first === first ? n + delta : 1 + delta));
  };
  return {
    ...query,
    bundle,
    items: matches(bundle),
    pageNumber: page.first === first ? pageNumber : 1,
    hasNext: Boolean(next),
    hasPrevious: Boolean(previous),
    nextPage: () => go(next, 1),
    previousPage: () => go(previous, -1),
  };
}
