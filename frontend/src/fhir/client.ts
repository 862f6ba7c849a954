import type { Bundle, OperationOutcome, Resource } from './types';

/** A failed FHIR call: the HTTP status and the server's OperationOutcome (when it sent one). */
export class FhirError extends Error {
  constructor(
    readonly status: number,
    readonly outcome: OperationOutcome | null,
    message: string,
  ) {
    super(message);
    this.name = 'FhirError';
  }
}

/** The readable text of an OperationOutcome: each issue's details or diagnostics, one per line. */
export function outcomeText(outcome: OperationOutcome | null | undefined): string {
  if (!outcome?.issue?.length) return '';
  return outcome.issue
    .map((issue) => {
      const text = issue.details?.text ?? issue.diagnostics ?? issue.code;
      const where = issue.expression?.length ? ` (${issue.expression.join(', ')})` : '';
      return text + where;
    })
    .join('\n');
}

export type TokenSource = () => Promise<string | null>;

export interface FhirClientOptions {
  baseUrl: string;
  getToken: TokenSource;
  onUnauthorized?: () => void;
  fetchImpl?: typeof fetch;
}

const FHIR_JSON = 'application/fhir+json';

/** The app's only way to the server: plain FHIR REST on the public `/fhir` endpoint with a bearer token. */
export class FhirClient {
  constructor(private readonly options: FhirClientOptions) {}

  get baseUrl(): string {
    return this.options.baseUrl;
  }

  /** An absolute URL (paging links) or a path relative to the FHIR base. */
  url(pathOrUrl: string): string {
    if (/^https?:\/\//.test(pathOrUrl)) return pathOrUrl;
    return `${this.options.baseUrl.replace(/\/$/, '')}/${pathOrUrl.replace(/^\//, '')}`;
  }

  async request<T>(
    method: string,
    pathOrUrl: string,
    body?: unknown,
    headers: Record<string, string> = {},
    signal?: AbortSignal,
  ): Promise<T> {
    const token = await this.options.getToken();
    const fetchImpl = this.options.fetchImpl ?? fetch;
    const response = await fetchImpl(this.url(pathOrUrl), {
      method,
      headers: {
        Accept: FHIR_JSON,
        ...(body === undefined ? {} : { 'Content-Type': FHIR_JSON }),
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
    if (response.status === 401) this.options.onUnauthorized?.();
    const text = await response.text();
    const json: unknown = text ? safeJson(text) : null;
    if (!response.ok) {
      const outcome = isOutcome(json) ? json : null;
      const message = outcomeText(outcome) || describeError(json) || `${response.status} ${response.statusText}`;
      throw new FhirError(response.status, outcome, message);
    }
    return json as T;
  }

  read<T extends Resource>(type: string, id: string): Promise<T> {
    return this.request<T>('GET', `${type}/${encodeURIComponent(id)}`);
  }

  search<T extends Resource>(type: string, params: URLSearchParams | Record<string, string>): Promise<Bundle<T>> {
    const query = params instanceof URLSearchParams ? params : new URLSearchParams(params);
    return this.request<Bundle<T>>('GET', `${type}?${query.toString()}`);
  }

  /** Follow a Bundle paging link (`next`, `previous`) exactly as the server wrote it. */
  page<T extends Resource>(url: string, signal?: AbortSignal): Promise<Bundle<T>> {
    return this.request<Bundle<T>>('GET', url, undefined, {}, signal);
  }

  create<T extends Resource>(resource: T): Promise<T> {
    return this.request<T>('POST', resource.resourceType, resource, { Prefer: 'return=representation' });
  }

  update<T extends Resource>(resource: T): Promise<T> {
    if (!resource.id) throw new Error('update needs an id');
    const ifMatch: Record<string, string> = resource.meta?.versionId ? { 'If-Match': `W/"${resource.meta.versionId}"` } : {};
    return this.request<T>('PUT', `${resource.resourceType}/${resource.id}`, resource, {
      Prefer: 'return=representation',
      ...ifMatch,
    });
  }

  transaction(bundle: Bundle): Promise<Bundle> {
    return this.request<Bundle>('POST', '', bundle, { Prefer: 'return=representation' });
  }

  operation<T>(path: string, parameters: unknown): Promise<T> {
    return this.request<T>('POST', path, parameters);
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function isOutcome(json: unknown): json is OperationOutcome {
  return typeof json === 'object' && json !== null && (json as { resourceType?: string }).resourceType === 'OperationOutcome';
}

function describeError(json: unknown): string {
  if (typeof json !== 'object' || json === null) return '';
  const { error_description: description, error } = json as { error_description?: string; error?: string };
  return description ?? error ?? '';
}

/** The resources of a Bundle that matched the search (not `_include`d ones). */
export function matches<T extends Resource>(bundle: Bundle<T> | undefined): T[] {
  return (bundle?.entry ?? [])
    .filter((entry) => entry.search?.mode !== 'include' && entry.search?.mode !== 'outcome')
    .flatMap((entry) => (entry.resource ? [entry.resource] : []));
}

export function included<T extends Resource>(bundle: Bundle | undefined, type: string): T[] {
  return (bundle?.entry ?? [])
    .flatMap((entry) => (entry.resource?.resourceType === type ? [entry.resource as unknown as T] : []));
}

export function linkOf(bundle: Bundle | undefined, relation: string): string | undefined {
  return bundle?.link?.find((link) => link.relation === relation)?.url;
}
