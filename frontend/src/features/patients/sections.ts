import { conceptText, formatDate, formatDateTime } from '../../fhir/format';
import type { AnyResource, CodeableConcept, Period, Reference } from '../../fhir/types';

/** The record's parts shown on the summary, each a FHIR search in the patient's data. */
export interface Section {
  key: string;
  type: string;
  /** Clinical content: shown only to roles that may read it. */
  clinical: boolean;
  params: (patientId: string, now: string) => Record<string, string>;
  describe: (resource: AnyResource, locale: string) => { title: string; detail: string };
}

const text = (value: unknown) => conceptText(value as CodeableConcept | undefined);
const period = (value: unknown) => value as Period | undefined;
const refs = (value: unknown) => (value as Reference[] | undefined) ?? [];

export const SECTIONS: Section[] = [
  {
    key: 'problems',
    clinical: true,
    type: 'Condition',
    params: (id) => ({ patient: id, _sort: '-recorded-date' }),
    describe: (r, locale) => ({
      title: text(r.code),
      detail: [text(r.clinicalStatus), formatDate(r.onsetDateTime as string | undefined, locale)].filter(Boolean).join(' · '),
    }),
  },
  {
    key: 'medications',
    clinical: true,
    type: 'MedicationRequest',
    params: (id) => ({ patient: id, _sort: '-authoredon' }),
    describe: (r, locale) => ({
      title: text(r.medicationCodeableConcept) || ((r.medicationReference as Reference | undefined)?.display ?? ''),
      detail: [r.status as string, formatDate(r.authoredOn as string | undefined, locale)].filter(Boolean).join(' · '),
    }),
  },
  {
    key: 'allergies',
    clinical: true,
    type: 'AllergyIntolerance',
    params: (id) => ({ patient: id }),
    describe: (r) => {
      const reaction = (r.reaction as { manifestation?: CodeableConcept[] }[] | undefined)?.[0]?.manifestation?.[0];
      return { title: text(r.code), detail: [r.criticality as string, text(reaction)].filter(Boolean).join(' · ') };
    },
  },
  {
    key: 'upcoming',
    clinical: false,
    type: 'Appointment',
    params: (id, now) => ({ patient: id, date: `ge${now}`, _sort: 'date' }),
    describe: (r, locale) => ({
      title: formatDateTime(r.start as string | undefined, locale),
      detail: [text((r.serviceType as CodeableConcept[] | undefined)?.[0]), r.status as string, ...practitioners(r)].filter(Boolean).join(' · '),
    }),
  },
  {
    key: 'past',
    clinical: false,
    type: 'Appointment',
    params: (id, now) => ({ patient: id, date: `lt${now}`, _sort: '-date' }),
    describe: (r, locale) => ({
      title: formatDateTime(r.start as string | undefined, locale),
      detail: [text((r.serviceType as CodeableConcept[] | undefined)?.[0]), r.status as string, ...practitioners(r)].filter(Boolean).join(' · '),
    }),
  },
  {
    key: 'encounters',
    clinical: true,
    type: 'Encounter',
    params: (id) => ({ patient: id, _sort: '-date' }),
    describe: (r, locale) => ({
      title: formatDateTime(period(r.period)?.start, locale) || (r.status as string),
      detail: [text((r.type as CodeableConcept[] | undefined)?.[0]), r.status as string].filter(Boolean).join(' · '),
    }),
  },
  {
    key: 'insurance',
    clinical: false,
    type: 'Coverage',
    params: (id) => ({ beneficiary: id }),
    describe: (r) => ({
      title: refs(r.payor).map((p) => p.display ?? p.reference).join(', '),
      detail: [r.subscriberId as string, r.status as string].filter(Boolean).join(' · '),
    }),
  },
];

function practitioners(r: AnyResource): string[] {
  const participants = (r.participant as { actor?: Reference }[] | undefined) ?? [];
  return participants
    .map((p) => p.actor)
    .filter((actor): actor is Reference => Boolean(actor?.reference?.startsWith('Practitioner/') && actor.display))
    .map((actor) => actor.display as string);
}

export function sectionByKey(key: string | undefined): Section | undefined {
  return SECTIONS.find((section) => section.key === key);
}
