// PractitionerRole availability as the form edits it (docs/scheduling.md: working hours, absences, visit types).
import type { AnyResource, Reference } from '../../fhir/types';

export const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
export type Day = (typeof DAYS)[number];

export interface HoursRow { day: Day; from: string; to: string }
export interface AbsenceRow { description: string; from: string; to: string }

export interface AvailabilityDraft {
  hours: HoursRow[];
  absences: AbsenceRow[];
  services: string[]; // HealthcareService ids
}

interface AvailableTime { daysOfWeek?: Day[]; availableStartTime?: string; availableEndTime?: string }
interface NotAvailable { description?: string; during?: { start?: string; end?: string } }

const hhmm = (time?: string) => (time ?? '').slice(0, 5);

export function draftOf(role: AnyResource): AvailabilityDraft {
  const hours = ((role.availableTime as AvailableTime[] | undefined) ?? []).flatMap((slot) =>
    (slot.daysOfWeek ?? []).map((day) => ({ day, from: hhmm(slot.availableStartTime), to: hhmm(slot.availableEndTime) })),
  );
  const absences = ((role.notAvailable as NotAvailable[] | undefined) ?? []).map((n) => ({
    description: n.description ?? '',
    from: (n.during?.start ?? '').slice(0, 10),
    to: (n.during?.end ?? '').slice(0, 10),
  }));
  const services = ((role.healthcareService as Reference[] | undefined) ?? []).flatMap((ref) => ref.reference?.replace('HealthcareService/', '') ?? []);
  return { hours, absences, services };
}

export function problemsOf(draft: AvailabilityDraft): Record<string, string> {
  const problems: Record<string, string> = {};
  draft.hours.forEach((row, i) => {
    if (!row.from || !row.to || row.from >= row.to) problems[`hours.${i}`] = 'availability.hoursInvalid';
  });
  draft.absences.forEach((row, i) => {
    if (!row.description.trim() || !row.from || (row.to && row.to < row.from)) problems[`absences.${i}`] = 'availability.absenceInvalid';
  });
  return problems;
}

export function applyDraft(role: AnyResource, draft: AvailabilityDraft): AnyResource {
  const next: AnyResource = {
    ...role,
    availableTime: draft.hours.map((row) => ({ daysOfWeek: [row.day], availableStartTime: `${row.from}:00`, availableEndTime: `${row.to}:00` })),
    notAvailable: draft.absences.map((row) => ({
      description: row.description.trim(),
      during: { start: row.from, ...(row.to ? { end: row.to } : {}) },
    })),
    healthcareService: draft.services.map((id) => ({ reference: `HealthcareService/${id}` })),
  };
  for (const key of ['availableTime', 'notAvailable', 'healthcareService'] as const) {
    if (Array.isArray(next[key]) && (next[key] as unknown[]).length === 0) delete next[key];
  }
  return next;
}
