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

export function formatDate(value: string | undefined, locale: string): string {
  if (!value) return '';
  if (/^\d{4}-\d{2}-\d{2}$/.test(value)) {
    const [y, m, d] = value.split('-').map(Number) as [number, number, number];
    return new Date(y, m - 1, d).toLocaleDateString(locale, { year: 'numeric', month: 'short', day: 'numeric' });
  }
  return new Date(value).toLocaleDateString(locale, { year: 'numeric', month: 'short', day: 'numeric' });
}

export function formatDateTime(value: string | undefined, locale: string): string {
  if (!value) return '';
  return new Date(value).toLocaleString(locale, { dateStyle: 'medium', timeStyle: 'short' });
}
