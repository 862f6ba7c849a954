import { describe, expect, it } from 'vitest';
import { MRN_SYSTEM } from '../../fhir/format';
import { duplicateQueries, editBundle, emptyDraft, fromPatient, registrationBundle, toPatient, validate, withAllergies, withCoverage, type AllergyStatus, type PatientDraft } from './registration';
import type { AnyResource } from '../../fhir/types';

function draft(overrides: Partial<PatientDraft> = {}): PatientDraft {
  return { ...emptyDraft(), given: 'Mei Ling', family: 'Chen', gender: 'female', birthDate: '1980-02-03', ...overrides };
}

describe('validate', () => {
  it('names every missing required field', () => {
    expect(validate(emptyDraft())).toEqual({
      given: 'validation.givenRequired',
      family: 'validation.familyRequired',
      gender: 'validation.genderRequired',
      birthDate: 'validation.birthDateRequired',
    });
    expect(validate(draft())).toEqual({});
  });

  it('refuses birth dates in the future or before 1900, and malformed contact details', () => {
    expect(validate(draft({ birthDate: '2999-01-01' })).birthDate).toBe('validation.birthDateFuture');
    expect(validate(draft({ birthDate: '1899-12-31' })).birthDate).toBe('validation.birthDateTooOld');
    expect(validate(draft({ phone: 'call me' })).phone).toBe('validation.phone');
    expect(validate(draft({ phone: '+1 (555) 010-1234' })).phone).toBeUndefined();
    expect(validate(draft({ email: 'a@b' })).email).toBe('validation.email');
  });

  it('needs both insurer and member id, and complete emergency contacts and allergies', () => {
    expect(validate(draft({ payer: 'Acme' })).memberId).toBe('validation.memberIdRequired');
    expect(validate(draft({ memberId: 'M1' })).payer).toBe('validation.payerRequired');
    const problems = validate(draft({ contacts: [{ name: '', relationship: 'C', phone: 'x' }], allergies: [{ substance: ' ', criticality: 'low', reaction: '' }] }));
    expect(problems['contacts.0.name']).toBe('validation.contactName');
    expect(problems['contacts.0.phone']).toBe('validation.phone');
    expect(problems['allergies.0.substance']).toBe('validation.substanceRequired');
  });
});

describe('FHIR mapping', () => {
  const full = draft({
    mrn: 'MRN-9',
    phone: '555 0101',
    email: 'mei@example.com',
    language: 'zh',
    contacts: [{ name: 'Li Wei', relationship: 'SPS', phone: '555 0199' }],
    payer: 'Acme Health',
    memberId: 'A-1',
    allergies: [{ substance: 'Penicillin', criticality: 'high', reaction: 'Rash' }],
    consents: { 'sms-reminders': true, 'email-reminders': false, 'research-contact': false },
  });

  it('builds the Patient with contacts, language and consent flags, and reads it back', () => {
    const patient = toPatient(full);
    expect(patient.identifier).toEqual([{ system: MRN_SYSTEM, value: 'MRN-9' }]);
    expect(patient.name).toEqual([{ use: 'official', family: 'Chen', given: ['Mei', 'Ling'] }]);
    expect(patient.communication?.[0]?.language.coding?.[0]?.code).toBe('zh');
    expect(patient.contact?.[0]?.relationship?.[0]?.coding?.[0]?.code).toBe('SPS');
    const back = fromPatient(patient);
    expect(back).toMatchObject({ given: 'Mei Ling', family: 'Chen', phone: '555 0101', email: 'mei@example.com', language: 'zh' });
    expect(back.contacts).toEqual(full.contacts);
    expect(back.consents['sms-reminders']).toBe(true);
  });

  it('registers Patient, Coverage and AllergyIntolerance in one transaction linked by urn:uuid', () => {
    const bundle = registrationBundle(full, 'c0ffee00-0000-4000-8000-000000000000');
    expect(bundle.type).toBe('transaction');
    const types = bundle.entry?.map((entry) => entry.resource?.resourceType);
    expect(types).toEqual(['Patient', 'Coverage', 'AllergyIntolerance']);
    const [, coverage, allergy] = (bundle.entry ?? []).map((entry) => entry.resource as unknown as Record<string, unknown>);
    expect(coverage).toMatchObject({ subscriberId: 'A-1', payor: [{ display: 'Acme Health' }], beneficiary: { reference: 'urn:uuid:c0ffee00-0000-4000-8000-000000000000' } });
    expect(allergy).toMatchObject({ code: { text: 'Penicillin' }, criticality: 'high' });
  });

  it('looks for duplicates by name + birth date and by phone', () => {
    const queries = duplicateQueries(full).map((q) => Object.fromEntries(new URLSearchParams(q)));
    expect(queries).toEqual([
      { family: 'Chen', birthdate: '1980-02-03', given: 'Mei', _count: '10' },
      { phone: '555 0101', _count: '10' },
    ]);
  });
});

describe('editBundle', () => {
  const stored = { ...toPatient(draft({ mrn: 'MRN-1' })), id: 'p1', meta: { versionId: '4' } };

  it('updates the Patient only if unchanged since it was read, and adds new allergies', () => {
    const bundle = editBundle(draft({ mrn: 'MRN-1', allergies: [{ substance: 'Latex', criticality: 'low', reaction: '' }] }), stored, undefined);
    expect(bundle.entry?.map((e) => [e.request?.method, e.request?.url])).toEqual([
      ['PUT', 'Patient/p1'],
      ['POST', 'AllergyIntolerance'],
    ]);
    expect((bundle.entry?.[0]?.request as { ifMatch?: string }).ifMatch).toBe('W/"4"');
    expect((bundle.entry?.[1]?.resource as unknown as { patient: unknown }).patient).toEqual({ reference: 'Patient/p1' });
  });

  it('updates the current Coverage when the insurance changed, cancels it when emptied, creates one when new', () => {
    const coverage = { resourceType: 'Coverage', id: 'c1', status: 'active', subscriberId: 'A-1', payor: [{ display: 'Acme' }] };
    const same = editBundle(draft({ payer: 'Acme', memberId: 'A-1' }), stored, coverage);
    expect(same.entry).toHaveLength(1);
    const changed = editBundle(draft({ payer: 'Acme', memberId: 'A-2' }), stored, coverage);
    expect(changed.entry?.[1]?.request).toEqual({ method: 'PUT', url: 'Coverage/c1' });
    expect((changed.entry?.[1]?.resource as unknown as { subscriberId: string }).subscriberId).toBe('A-2');
    const emptied = editBundle(draft(), stored, coverage);
    expect((emptied.entry?.[1]?.resource as unknown as { status: string }).status).toBe('cancelled');
    const added = editBundle(draft({ payer: 'Beta', memberId: 'B-1' }), stored, undefined);
    expect(added.entry?.[1]?.request).toEqual({ method: 'POST', url: 'Coverage' });
    expect(withCoverage(emptyDraft(), coverage)).toMatchObject({ payer: 'Acme', memberId: 'A-1' });
  });

  describe('recorded allergies', () => {
    const clinical = (code: string) => ({ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code }] });
    const verification = (code: string) => ({ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-verification', code }] });
    const peanut = {
      resourceType: 'AllergyIntolerance', id: 'a1', meta: { versionId: '2' }, patient: { reference: 'Patient/p1' },
      code: { text: 'Peanut' }, clinicalStatus: clinical('active'), verificationStatus: verification('confirmed'),
    };
    const latex = { resourceType: 'AllergyIntolerance', id: 'a2', code: { coding: [{ display: 'Latex' }] }, clinicalStatus: clinical('resolved') };
    const second = (bundle: ReturnType<typeof editBundle>) => {
      const entry = bundle.entry?.[1];
      return { request: entry?.request, resource: entry?.resource as unknown as Record<string, unknown> };
    };
    const changed = (allergies: AnyResource[], status: AllergyStatus) => {
      const edited = withAllergies(draft(), allergies);
      edited.recordedAllergies = edited.recordedAllergies.map((a, i) => (i === 0 ? { ...a, status } : a));
      return second(editBundle(edited, stored, undefined, allergies));
    };

    it('are listed with their status, and left alone when unchanged', () => {
      const edited = withAllergies(draft(), [peanut, latex]);
      expect(edited.recordedAllergies).toEqual([
        { id: 'a1', substance: 'Peanut', status: 'active' },
        { id: 'a2', substance: 'Latex', status: 'resolved' },
      ]);
      expect(editBundle(edited, stored, undefined, [peanut, latex]).entry).toHaveLength(1);
    });

    it('are updated when their status changed, only if unchanged since read', () => {
      const { request, resource } = changed([peanut, latex], 'resolved');
      expect(request).toEqual({ method: 'PUT', url: 'AllergyIntolerance/a1', ifMatch: 'W/"2"' });
      expect(resource.clinicalStatus).toEqual(clinical('resolved'));
      expect(resource.code).toEqual({ text: 'Peanut' });
    });

    it('recorded in error lose their clinical status (R4 invariant ait-2), and regain one when reinstated (ait-1)', () => {
      const wrong = changed([peanut], 'entered-in-error').resource;
      expect(wrong.clinicalStatus).toBeUndefined();
      expect(wrong.verificationStatus).toEqual(verification('entered-in-error'));
      expect(withAllergies(draft(), [wrong as AnyResource]).recordedAllergies[0]?.status).toBe('entered-in-error');
      const back = changed([wrong as AnyResource], 'active').resource;
      expect(back.clinicalStatus).toEqual(clinical('active'));
      expect(back.verificationStatus).toEqual(verification('confirmed'));
    });
  });
});
