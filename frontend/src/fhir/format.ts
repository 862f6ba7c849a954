import type { CodeableConcept, HumanName, Patient } from './types';

export const MRN_SYSTEM = 'https://pms.example.org/fhir/mrn';

export function formatName(name: HumanName | undefined): string {
  if (!name) return '';
  if (name.text) return name.text;
  return [...(name.given ?? []), name.family ?? ''].join(' ').trim();
}

export function patientName(patient: Patient | undefined): string {
  const name = patient?.name?.find((n) => n.use === 'official') ?? patient?.name?.[0];
  return formatName(name);
}

/** Whole years between a FHIR date and today (or `on`). */
export function ageOn(birthDate: string | undefined, on = new Date()): number | null {
  if (!birthDate || birthDate.length < 4) return null;
  const [year, month = 1, day = 1] = birthDate.split('-').map(Number) as [number, number?, number?];
  let age = on.getFullYear() - year;
  if (on.getMonth() + 1 < month || (on.getMonth() + 1 === month && on.getDate() < day)) age -= 1;
  return age;
}

export function mrnOf(patient: Patient | undefined): string | undefined {
  const ids = patient?.identifier ?? [];
  return (ids.find((id) => id.system === MRN_SYSTEM) ?? ids[0])?.value;
}

export function phoneOf(patient: Patient | undefined): string | undefined {
  return patient?.telecom?.find((t) => t.system === 'phone')?.value;
}

export function conceptText(concept: CodeableConcept | undefined): string {
  return concept?.text ?? concept?.coding?.[0]?.display ?? concept?.coding?.[0]?.code ?? '';
}

// Intl formatters are costly to build (toLocaleDateString builds one per call): one per locale and style.
const formatters = new Map<string, Intl.DateTimeFormat>();
function formatter(locale: string, style: 'date' | 'dateTime'): Intl.DateTimeFormat {
  const key = `${style}|${locale}`;
  let found = formatters.get(key);
  if (!found) {
    const options: Intl.DateTimeFormatOptions =
      style === 'date' ? { year: 'numeric', month: 'short', day: 'numeric' } : { dateStyle: 'medium', timeStyle: 'short' };
    found = new Intl.DateTimeFormat(locale, options);
    formatters.set(key, found);
  }
  return found;
}

export function formatDate(value: string | undefined, locale: string): string {
  if (!value) return '';
  if (/^\d{4}-\d{2}-\d{2}$/.test(value)) {
    const [y, m, d] = value.split('-').map(Number) as [number, number, number];
    return formatter(locale, 'date').format(new Date(y, m - 1, d));
  }
  return formatter(locale, 'date').format(new Date(value));
}

export function formatDateTime(value: string | undefined, locale: string): string {
  if (!value) return '';
  return formatter(locale, 'dateTime').format(new Date(value));
}
