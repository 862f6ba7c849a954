// The registration form's model, its validation (message keys for i18n) and its mapping to FHIR.
import { MRN_SYSTEM } from '../../fhir/format';
import type { AnyResource, Bundle, Patient, Reference } from '../../fhir/types';

export const EXT_BASE = 'https://pms.example.org/fhir/StructureDefinition/';
export const CONSENT_FLAGS = ['sms-reminders', 'email-reminders', 'research-contact'] as const;
export type ConsentFlag = (typeof CONSENT_FLAGS)[number];
export const LANGUAGE_CODES = ['en', 'zh', 'es', 'fr', 'vi', 'ar', 'hi', 'ko'] as const;
export const RELATIONSHIPS = ['C', 'N', 'SPS', 'PRN', 'CHILD', 'FRND'] as const;

export interface EmergencyContactDraft { name: string; relationship: string; phone: string }
export interface AllergyDraft { substance: string; criticality: 'low' | 'high' | 'unable-to-assess'; reaction: string }
/** Where a recorded allergy stands: its clinical status, or recorded in error (R4 AllergyIntolerance). */
export const ALLERGY_STATUSES = ['active', 'inactive', 'resolved', 'entered-in-error'] as const;
export type AllergyStatus = (typeof ALLERGY_STATUSES)[number];
/** An AllergyIntolerance already in the record: on edit, only its status can change. */
export interface RecordedAllergy { id: string; substance: string; status: AllergyStatus }

export interface PatientDraft {
  given: string;
  family: string;
  gender: '' | 'male' | 'female' | 'other' | 'unknown';
  birthDate: string;
  mrn: string;
  phone: string;
  email: string;
  addressLine: string;
  city: string;
  postalCode: string;
  language: string;
  contacts: EmergencyContactDraft[];
  payer: string;
  memberId: string;
  allergies: AllergyDraft[];
  recordedAllergies: RecordedAllergy[];
  consents: Record<ConsentFlag, boolean>;
}

export function emptyDraft(): PatientDraft {
  return {
    given: '', family: '', gender: '', birthDate: '', mrn: '', phone: '', email: '', addressLine: '', city: '',
    postalCode: '', language: '', contacts: [], payer: '', memberId: '', allergies: [], recordedAllergies: [],
    consents: { 'sms-reminders': false, 'email-reminders': false, 'research-contact': false },
  };
}

/** Field path (e.g. `contacts.0.phone`) -> i18n message key. Empty when the draft is valid. */
export type Problems = Record<string, string>;

const PHONE = /^\+?[0-9 ().-]{6,20}$/;
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

function today(): string {
  const now = new Date();
  return `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}-${String(now.getDate()).padStart(2, '0')}`;
}

export function validatePhone(value: string): string | null {
  if (!value.trim()) return null;
  return PHONE.test(value.trim()) && value.replace(/\D/g, '').length >= 6 ? null : 'validation.phone';
}

export function validate(draft: PatientDraft): Problems {
  const problems: Problems = {};
  if (!draft.given.trim()) problems.given = 'validation.givenRequired';
  if (!draft.family.trim()) problems.family = 'validation.familyRequired';
  if (!draft.gender) problems.gender = 'validation.genderRequired';
  if (!draft.birthDate) problems.birthDate = 'validation.birthDateRequired';
  else if (!/^\d{4}-\d{2}-\d{2}$/.test(draft.birthDate)) problems.birthDate = 'validation.birthDateFormat';
  else if (draft.birthDate > today()) problems.birthDate = 'validation.birthDateFuture';
  else if (draft.birthDate < '1900-01-01') problems.birthDate = 'validation.birthDateTooOld';
  const phone = validatePhone(draft.phone);
  if (phone) problems.phone = phone;
  if (draft.email.trim() && !EMAIL.test(draft.email.trim())) problems.email = 'validation.email';
  draft.contacts.forEach((contact, index) => {
    if (!contact.name.trim()) problems[`contacts.${index}.name`] = 'validation.contactName';
    if (!contact.phone.trim()) problems[`contacts.${index}.phone`] = 'validation.contactPhone';
    else if (validatePhone(contact.phone)) problems[`contacts.${index}.phone`] = 'validation.phone';
  });
  if (draft.payer.trim() && !draft.memberId.trim()) problems.memberId = 'validation.memberIdRequired';
  if (draft.memberId.trim() && !draft.payer.trim()) problems.payer = 'validation.payerRequired';
  draft.allergies.forEach((allergy, index) => {
    if (!allergy.substance.trim()) problems[`allergies.${index}.substance`] = 'validation.substanceRequired';
  });
  return problems;
}

export function newMrn(): string {
  return `MRN-${Date.now().toString(36).toUpperCase()}${Math.floor(Math.random() * 36 ** 2).toString(36).toUpperCase()}`;
}

/** The Patient resource for a draft (on edit, `base` keeps what the form does not show). */
export function toPatient(draft: PatientDraft, base?: Patient): Patient {
  const telecom = [
    ...(draft.phone.trim() ? [{ system: 'phone' as const, value: draft.phone.trim(), use: 'mobile' }] : []),
    ...(draft.email.trim() ? [{ system: 'email' as const, value: draft.email.trim() }] : []),
  ];
  const address = draft.addressLine.trim() || draft.city.trim() || draft.postalCode.trim()
    ? [{
        ...(draft.addressLine.trim() ? { line: [draft.addressLine.trim()] } : {}),
        ...(draft.city.trim() ? { city: draft.city.trim() } : {}),
        ...(draft.postalCode.trim() ? { postalCode: draft.postalCode.trim() } : {}),
      }]
    : undefined;
  const keptExtensions = (base?.extension ?? []).filter((e) => !e.url.startsWith(`${EXT_BASE}consent-`));
  const consentExtensions = CONSENT_FLAGS.map((flag) => ({ url: `${EXT_BASE}consent-${flag}`, valueBoolean: draft.consents[flag] }));
  const otherIds = (base?.identifier ?? []).filter((id) => id.system !== MRN_SYSTEM);
  const patient: Patient = {
    ...(base ?? {}),
    resourceType: 'Patient',
    active: base?.active ?? true,
    identifier: [...(draft.mrn.trim() ? [{ system: MRN_SYSTEM, value: draft.mrn.trim() }] : []), ...otherIds],
    name: [{ use: 'official', family: draft.family.trim(), given: draft.given.trim().split(/\s+/) }],
    gender: draft.gender || undefined,
    birthDate: draft.birthDate,
    telecom: telecom.length ? telecom : undefined,
    address,
    communication: draft.language
      ? [{ language: { coding: [{ system: 'urn:ietf:bcp:47', code: draft.language }] }, preferred: true }]
      : undefined,
    contact: draft.contacts.length
      ? draft.contacts.map((contact) => ({
          relationship: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0131', code: contact.relationship || 'C' }] }],
          name: { text: contact.name.trim() },
          telecom: [{ system: 'phone' as const, value: contact.phone.trim() }],
        }))
      : undefined,
    extension: [...keptExtensions, ...consentExtensions],
  };
  for (const key of Object.keys(patient) as (keyof Patient)[]) if (patient[key] === undefined) delete patient[key];
  return patient;
}

/** A draft from a stored Patient (edit). */
export function fromPatient(patient: Patient): PatientDraft {
  const name = patient.name?.find((n) => n.use === 'official') ?? patient.name?.[0];
  const consent = (flag: ConsentFlag) =>
    patient.extension?.find((e) => e.url === `${EXT_BASE}consent-${flag}`)?.valueBoolean === true;
  return {
    ...emptyDraft(),
    given: (name?.given ?? []).join(' '),
    family: name?.family ?? '',
    gender: patient.gender ?? '',
    birthDate: patient.birthDate ?? '',
    mrn: patient.identifier?.find((id) => id.system === MRN_SYSTEM)?.value ?? '',
    phone: patient.telecom?.find((t) => t.system === 'phone')?.value ?? '',
    email: patient.telecom?.find((t) => t.system === 'email')?.value ?? '',
    addressLine: patient.address?.[0]?.line?.[0] ?? '',
    city: patient.address?.[0]?.city ?? '',
    postalCode: patient.address?.[0]?.postalCode ?? '',
    language: patient.communication?.[0]?.language.coding?.[0]?.code ?? '',
    contacts: (patient.contact ?? []).map((contact) => ({
      name: contact.name?.text ?? [...(contact.name?.given ?? []), contact.name?.family ?? ''].join(' ').trim(),
      relationship: contact.relationship?.[0]?.coding?.[0]?.code ?? 'C',
      phone: contact.telecom?.find((t) => t.system === 'phone')?.value ?? '',
    })),
    consents: { 'sms-reminders': consent('sms-reminders'), 'email-reminders': consent('email-reminders'), 'research-contact': consent('research-contact') },
  };
}

type Entry = { fullUrl?: string; resource: AnyResource; request: { method: string; url: string; ifMatch?: string } };

function coverageResource(draft: PatientDraft, beneficiary: Reference, base?: AnyResource): AnyResource {
  return {
    ...(base ?? {}),
    resourceType: 'Coverage',
    status: 'active',
    beneficiary,
    subscriberId: draft.memberId.trim(),
    identifier: [{ value: draft.memberId.trim() }],
    payor: [{ display: draft.payer.trim() }],
  };
}

function allergyEntries(draft: PatientDraft, patient: Reference): Entry[] {
  return draft.allergies.map((allergy) => ({
    resource: {
      resourceType: 'AllergyIntolerance',
      clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] },
      verificationStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-verification', code: 'confirmed' }] },
      code: { text: allergy.substance.trim() },
      criticality: allergy.criticality,
      patient,
      ...(allergy.reaction.trim() ? { reaction: [{ manifestation: [{ text: allergy.reaction.trim() }] }] } : {}),
    },
    request: { method: 'POST', url: 'AllergyIntolerance' },
  }));
}

const CLINICAL_STATUS = 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical';
const VERIFICATION_STATUS = 'http://terminology.hl7.org/CodeSystem/allergyintolerance-verification';

export function allergyStatus(allergy: AnyResource): AllergyStatus {
  const verification = allergy.verificationStatus as { coding?: { code?: string }[] } | undefined;
  if (verification?.coding?.some((c) => c.code === 'entered-in-error')) return 'entered-in-error';
  const clinical = (allergy.clinicalStatus as { coding?: { code?: string }[] } | undefined)?.coding?.[0]?.code;
  return clinical === 'inactive' || clinical === 'resolved' ? clinical : 'active';
}

/** The recorded allergies of a draft being edited (their current status). */
export function withAllergies(draft: PatientDraft, allergies: AnyResource[]): PatientDraft {
  return {
    ...draft,
    recordedAllergies: allergies
      .filter((a) => a.id)
      .map((a) => ({ id: a.id as string, substance: conceptLabel(a.code), status: allergyStatus(a) })),
  };
}

function conceptLabel(code: unknown): string {
  const concept = code as { text?: string; coding?: { display?: string; code?: string }[] } | undefined;
  return concept?.text ?? concept?.coding?.[0]?.display ?? concept?.coding?.[0]?.code ?? '';
}

/** An allergy with a new status. Recorded in error, it has no clinical status (invariant ait-2); otherwise
 * it must have one, and a verification status other than entered-in-error (ait-1). */
export function withAllergyStatus(allergy: AnyResource, status: AllergyStatus): AnyResource {
  const { clinicalStatus: _dropped, ...rest } = allergy;
  if (status === 'entered-in-error') {
    return { ...rest, verificationStatus: { coding: [{ system: VERIFICATION_STATUS, code: 'entered-in-error' }] } };
  }
  const wasError = allergyStatus(allergy) === 'entered-in-error';
  return {
    ...rest,
    clinicalStatus: { coding: [{ system: CLINICAL_STATUS, code: status }] },
    ...(wasError || !allergy.verificationStatus
      ? { verificationStatus: { coding: [{ system: VERIFICATION_STATUS, code: 'confirmed' }] } }
      : {}),
  };
}

/** PUTs (If-Match: nobody changed them meanwhile) for the recorded allergies whose status the draft changed. */
function allergyStatusEntries(draft: PatientDraft, recorded: AnyResource[]): Entry[] {
  const byId = new Map(recorded.filter((a) => a.id).map((a) => [a.id as string, a]));
  return draft.recordedAllergies.flatMap(({ id, status }) => {
    const original = byId.get(id);
    if (!original || allergyStatus(original) === status) return [];
    const version = original.meta?.versionId;
    return [{
      resource: withAllergyStatus(original, status),
      request: { method: 'PUT', url: `AllergyIntolerance/${id}`, ...(version ? { ifMatch: `W/"${version}"` } : {}) },
    }];
  });
}

/** One all-or-nothing transaction: the Patient, their Coverage and their AllergyIntolerances. */
export function registrationBundle(draft: PatientDraft, patientUuid: string): Bundle {
  const ref = { reference: `urn:uuid:${patientUuid}` };
  const entries: Entry[] = [
    { fullUrl: `urn:uuid:${patientUuid}`, resource: toPatient(draft) as unknown as AnyResource, request: { method: 'POST', url: 'Patient' } },
  ];
  if (draft.payer.trim() && draft.memberId.trim()) {
    entries.push({ resource: coverageResource(draft, ref), request: { method: 'POST', url: 'Coverage' } });
  }
  entries.push(...allergyEntries(draft, ref));
  return { resourceType: 'Bundle', type: 'transaction', entry: entries } as Bundle;
}

/**
 * Saving an edit, all or nothing: the Patient (only if nobody changed it meanwhile: If-Match), their
 * insurance (the current Coverage updated, or a new one; emptied = cancelled), the recorded allergies
 * whose status changed, and newly added allergies.
 */
export function editBundle(
  draft: PatientDraft,
  patient: Patient,
  coverage: AnyResource | undefined,
  recordedAllergies: AnyResource[] = [],
): Bundle {
  const ref = { reference: `Patient/${patient.id}` };
  const version = patient.meta?.versionId;
  const entries: Entry[] = [
    {
      resource: toPatient(draft, patient) as unknown as AnyResource,
      request: { method: 'PUT', url: `Patient/${patient.id}`, ...(version ? { ifMatch: `W/"${version}"` } : {}) },
    },
  ];
  const insured = Boolean(draft.payer.trim() && draft.memberId.trim());
  if (coverage?.id) {
    const payer = (coverage.payor as { display?: string }[] | undefined)?.[0]?.display ?? '';
    const changed = payer !== draft.payer.trim() || coverage.subscriberId !== draft.memberId.trim();
    if (insured && changed) {
      entries.push({ resource: coverageResource(draft, ref, coverage), request: { method: 'PUT', url: `Coverage/${coverage.id}` } });
    } else if (!insured) {
      entries.push({ resource: { ...coverage, status: 'cancelled' }, request: { method: 'PUT', url: `Coverage/${coverage.id}` } });
    }
  } else if (insured) {
    entries.push({ resource: coverageResource(draft, ref), request: { method: 'POST', url: 'Coverage' } });
  }
  entries.push(...allergyStatusEntries(draft, recordedAllergies), ...allergyEntries(draft, ref));
  return { resourceType: 'Bundle', type: 'transaction', entry: entries } as Bundle;
}

/** The insurance fields of a draft from the patient's current Coverage. */
export function withCoverage(draft: PatientDraft, coverage: AnyResource | undefined): PatientDraft {
  if (!coverage) return draft;
  return {
    ...draft,
    payer: (coverage.payor as { display?: string }[] | undefined)?.[0]?.display ?? '',
    memberId: String(coverage.subscriberId ?? ''),
  };
}

/** The searches that find a likely duplicate: same name and birth date, or same phone. */
export function duplicateQueries(draft: PatientDraft): string[] {
  const queries: string[] = [];
  if (draft.family.trim() && draft.birthDate) {
    const params = new URLSearchParams({ family: draft.family.trim(), birthdate: draft.birthDate, _count: '10' });
    const given = draft.given.trim().split(/\s+/)[0];
    if (given) params.set('given', given);
    queries.push(params.toString());
  }
  if (draft.phone.trim()) {
    queries.push(new URLSearchParams({ phone: draft.phone.trim(), _count: '10' }).toString());
  }
  return queries;
}
