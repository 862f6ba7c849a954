// The calendar's view of scheduling (docs/scheduling.md): columns are Schedules (a practitioner or a
// room), free time is their free Slots, bookings are Appointments whose participants include the actor.
import { formatName } from '../../fhir/format';
import type { AnyResource, Bundle, CodeableConcept, HumanName, Reference } from '../../fhir/types';

export const FHIR_EXT = 'https://pms.example.org/fhir';
export const VISIT_TYPE_SYSTEM = `${FHIR_EXT}/CodeSystem/visit-type`;
export const VISIT_DURATION_URL = `${FHIR_EXT}/StructureDefinition/visit-duration`;
export const HOLDING_STATUSES = ['pending', 'booked', 'arrived', 'checked-in', 'fulfilled'];
export const SHOWN_STATUSES = [...HOLDING_STATUSES, 'noshow'];

export interface CalendarColumn {
  scheduleId: string;
  label: string;
  kind: 'practitioner' | 'room' | 'other';
  /** References that identify this column's actor among an Appointment's participants. */
  actorRefs: string[];
  /** Participants a booking in this column gets (PractitionerRole + Practitioner, or the room). */
  bookingActors: Reference[];
  colourIndex: number;
}

export interface VisitType {
  id: string;
  code: string;
  name: string;
  minutes: number;
  coding: { system: string; code: string; display?: string };
}

export interface Appointment extends AnyResource {
  resourceType: 'Appointment';
  status: string;
  start?: string;
  end?: string;
  participant?: { actor?: Reference; status?: string }[];
  serviceType?: CodeableConcept[];
  comment?: string;
  cancelationReason?: CodeableConcept;
  requestedPeriod?: { start?: string; end?: string }[];
}

export interface Slot extends AnyResource {
  resourceType: 'Slot';
  schedule: Reference;
  start: string;
  end: string;
  status: string;
}

export const PALETTE = ['#1864ab', '#2b8a3e', '#862e9c', '#c92a2a', '#a63c06', '#087f5b', '#5f3dc4', '#364fc7', '#7a5c00', '#0b7285'];

function displayOf(resource: AnyResource | undefined): string {
  if (!resource) return '';
  if (resource.resourceType === 'Practitioner') {
    return formatName((resource.name as HumanName[] | undefined)?.[0]);
  }
  return String(resource.name ?? '');
}

/** Columns from `Schedule?_include=Schedule:actor`: one per Schedule, labelled by its person or room. */
export function columnsOf(bundle: Bundle | undefined): CalendarColumn[] {
  const entries = (bundle?.entry ?? []).map((e) => e.resource as AnyResource).filter(Boolean);
  const byRef = new Map(entries.map((r) => [`${r.resourceType}/${r.id}`, r]));
  const schedules = entries.filter((r) => r.resourceType === 'Schedule');
  return schedules
    .map((schedule, index) => {
      const actors = (schedule.actor as Reference[] | undefined) ?? [];
      const refs = actors.map((a) => a.reference ?? '').filter(Boolean);
      const practitioner = refs.find((r) => r.startsWith('Practitioner/'));
      const location = refs.find((r) => r.startsWith('Location/'));
      const labelled = practitioner ?? location ?? refs[0];
      const label =
        displayOf(labelled ? byRef.get(labelled) : undefined) ||
        actors.find((a) => a.display)?.display ||
        String((schedule.comment as string | undefined) ?? labelled ?? schedule.id);
      return {
        scheduleId: schedule.id as string,
        label,
        kind: practitioner ? 'practitioner' : location ? 'room' : 'other',
        actorRefs: refs,
        bookingActors: actors.filter((a) => a.reference && !a.reference.startsWith('HealthcareService/')),
        colourIndex: index % PALETTE.length,
      } satisfies CalendarColumn;
    })
    .sort((a, b) => (a.kind === b.kind ? a.label.localeCompare(b.label) : a.kind === 'practitioner' ? -1 : 1));
}

export function visitTypesOf(bundle: Bundle | undefined): VisitType[] {
  return (bundle?.entry ?? []).flatMap((entry) => {
    const service = entry.resource as AnyResource | undefined;
    const coding = (service?.type as CodeableConcept[] | undefined)?.flatMap((t) => t.coding ?? []).find((c) => c.system === VISIT_TYPE_SYSTEM);
    if (!service || !coding?.code) return [];
    const duration = (service.extension ?? []).find((e) => e.url === VISIT_DURATION_URL) as { valueDuration?: { value?: number } } | undefined;
    return [{
      id: service.id as string,
      code: coding.code,
      name: String(service.name ?? coding.display ?? coding.code),
      minutes: duration?.valueDuration?.value ?? 20,
      coding: { system: VISIT_TYPE_SYSTEM, code: coding.code, ...(coding.display ? { display: coding.display } : {}) },
    }];
  });
}

/** The columns an Appointment shows in: every column whose actor takes part in it. */
export function columnsOfAppointment(appointment: Appointment, columns: CalendarColumn[]): CalendarColumn[] {
  const refs = new Set((appointment.participant ?? []).map((p) => p.actor?.reference).filter(Boolean));
  return columns.filter((column) => column.actorRefs.some((ref) => refs.has(ref)));
}

export function patientOf(appointment: Appointment): Reference | undefined {
  return appointment.participant?.find((p) => p.actor?.reference?.startsWith('Patient/'))?.actor;
}

export function visitCodeOf(appointment: Appointment): string | undefined {
  return appointment.serviceType?.flatMap((s) => s.coding ?? []).find((c) => c.system === VISIT_TYPE_SYSTEM)?.code;
}

export function minutesBetween(start: string, end: string): number {
  return Math.round((new Date(end).getTime() - new Date(start).getTime()) / 60_000);
}

export function addMinutes(iso: string, minutes: number): string {
  return new Date(new Date(iso).getTime() + minutes * 60_000).toISOString();
}

/** Move an Appointment to a new start (keeping its length, or with a new one), and maybe another column. */
export function rescheduled(appointment: Appointment, start: string, minutes: number, from?: CalendarColumn, to?: CalendarColumn): Appointment {
  let participant = appointment.participant ?? [];
  if (from && to && from.scheduleId !== to.scheduleId) {
    const leaving = new Set(from.actorRefs);
    participant = [
      ...participant.filter((p) => !leaving.has(p.actor?.reference ?? '')),
      ...to.bookingActors.map((actor) => ({ actor, status: 'accepted' })),
    ];
  }
  const next: Appointment = { ...appointment, start, end: addMinutes(start, minutes), participant };
  delete next.minutesDuration;
  delete next.slot;
  return next;
}

export interface BookingRequest {
  patient: Reference;
  column: CalendarColumn;
  start: string;
  visitType: VisitType | undefined;
  minutes: number;
  comment: string;
}

export function newAppointment(request: BookingRequest): Appointment {
  return {
    resourceType: 'Appointment',
    status: 'booked',
    start: request.start,
    end: addMinutes(request.start, request.minutes),
    ...(request.visitType ? { serviceType: [{ coding: [request.visitType.coding], text: request.visitType.name }] } : {}),
    ...(request.comment.trim() ? { comment: request.comment.trim() } : {}),
    participant: [
      { actor: request.patient, status: 'accepted' },
      ...request.column.bookingActors.map((actor) => ({ actor, status: 'accepted' })),
    ],
  };
}

/**
 * A weekly series for `$book`: the server repeats the first visit at the same local time (also across a
 * daylight-saving change, which adding 7 x 24 hours here would not), links the occurrences with a series
 * identifier, and books all of them or none (a 409 lists every taken date).
 */
export function weeklySeries(first: Appointment, count: number): SeriesRequest {
  return {
    resourceType: 'Parameters',
    parameter: [
      { name: 'appointment', resource: first },
      { name: 'recurrence', valueString: `FREQ=WEEKLY;COUNT=${count}` },
    ],
  };
}

export interface SeriesRequest {
  resourceType: 'Parameters';
  parameter: ({ name: 'appointment'; resource: Appointment } | { name: 'recurrence'; valueString: string })[];
}

/** Start of the local day, and the days a view shows. */
export function startOfDay(date: Date): Date {
  const day = new Date(date);
  day.setHours(0, 0, 0, 0);
  return day;
}

export function viewDays(anchor: Date, view: 'day' | 'week'): Date[] {
  const first = startOfDay(anchor);
  if (view === 'week') first.setDate(first.getDate() - ((first.getDay() + 6) % 7)); // Monday
  return Array.from({ length: view === 'week' ? 7 : 1 }, (_, i) => {
    const day = new Date(first);
    day.setDate(first.getDate() + i);
    return day;
  });
}

export function sameDay(a: Date, b: Date): boolean {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}
