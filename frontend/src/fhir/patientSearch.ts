// One search box, many FHIR searches: what the typed text looks like decides which parameters are asked.

export type SearchKind = 'birthdate' | 'phone' | 'identifier' | 'name';

const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const DAY_FIRST_DATE = /^(\d{1,2})[./](\d{1,2})[./](\d{4})$/;

/** `1980-02-03` or `03/02/1980` (day first, as most of the world writes it) -> `1980-02-03`. */
export function asBirthDate(term: string): string | null {
  const iso = ISO_DATE.exec(term);
  if (iso) return term;
  const dayFirst = DAY_FIRST_DATE.exec(term);
  if (!dayFirst) return null;
  const [, day, month, year] = dayFirst;
  return `${year}-${month!.padStart(2, '0')}-${day!.padStart(2, '0')}`;
}

function looksLikePhone(term: string): boolean {
  return /^\+?[\d\s().-]{6,}$/.test(term) && term.replace(/\D/g, '').length >= 6;
}

/** The searches (Patient query strings) for what the user typed; the page runs them together and merges. */
export function patientQueries(rawTerm: string, count = 20): string[] {
  const term = rawTerm.trim().replace(/\s+/g, ' ');
  if (term.length < 2) return [];
  // No `_sort`: ordering thousands of name matches costs the server more than the whole 300 ms budget on
  // 100k patients; the default order stops at `_count` rows. The page sorts what it shows by name.
  const query = (pairs: [string, string][]) => new URLSearchParams([...pairs, ['_count', String(count)]]).toString();
  const date = asBirthDate(term);
  if (date) return [query([['birthdate', date]])];
  const queries: string[] = [];
  if (looksLikePhone(term)) queries.push(query([['phone', term]]));
  if (!term.includes(' ')) queries.push(query([['identifier', term]]));
  if (/\p{L}/u.test(term)) {
    // Every word must match the start of some part of the name (`name` is an accent-free prefix match).
    queries.push(query(term.split(' ').map((word): [string, string] => ['name', word])));
  }
  return queries;
}
