import { Alert, Button, Group, List, Stack, Title } from '@mantine/core';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { Link, useNavigate, useParams } from 'react-router-dom';
import { seesClinicalRecord } from '../../auth/roles';
import { useSession } from '../../auth/session';
import { matches } from '../../fhir/client';
import { useFhirClient } from '../../fhir/context';
import { formatDate, mrnOf, patientName, phoneOf } from '../../fhir/format';
import { useResource } from '../../fhir/hooks';
import type { AnyResource, Bundle, Patient } from '../../fhir/types';
import { ErrorMessage, Loading } from '../shell/States';
import { PatientForm } from './PatientForm';
import { duplicateQueries, editBundle, emptyDraft, fromPatient, newMrn, registrationBundle, withAllergies, withCoverage, type PatientDraft } from './registration';

function idFromLocation(location: string | undefined): string | undefined {
  const match = /Patient\/([^/]+)/.exec(location ?? '');
  return match?.[1];
}

export default function PatientRegistrationPage() {
  const { id } = useParams();
  return id ? <EditPatient id={id} /> : <RegisterPatient />;
}

function RegisterPatient() {
  const { t, i18n } = useTranslation();
  const client = useFhirClient();
  const navigate = useNavigate();
  const queries = useQueryClient();
  const clinical = seesClinicalRecord(useSession().user?.roles ?? []);
  const [duplicates, setDuplicates] = useState<{ draft: PatientDraft; patients: Patient[] } | null>(null);

  const create = useMutation({
    mutationFn: async (draft: PatientDraft) => {
      const withMrn = draft.mrn.trim() ? draft : { ...draft, mrn: newMrn() };
      const response = await client.transaction(registrationBundle(withMrn, crypto.randomUUID()));
      const first = response.entry?.[0];
      return first?.resource?.id ?? idFromLocation(first?.response?.location);
    },
    onSuccess: (id) => {
      void queries.invalidateQueries({ queryKey: ['patient-search'] });
      if (id) navigate(`/patients/${id}`);
    },
  });
  const check = useMutation({
    mutationFn: async (draft: PatientDraft) => {
      const bundles = await Promise.all(duplicateQueries(draft).map((q) => client.request<Bundle<Patient>>('GET', `Patient?${q}`)));
      const seen = new Map<string, Patient>();
      for (const patient of bundles.flatMap((b) => matches(b))) if (patient.id) seen.set(patient.id, patient);
      return { draft, patients: [...seen.values()] };
    },
    onSuccess: (found) => {
      if (found.patients.length) setDuplicates(found);
      else create.mutate(found.draft);
    },
  });

  return (
    <Stack maw={960}>
      <Title order={2}>{t('registration.title')}</Title>
      <ErrorMessage error={check.error ?? create.error} />
      {duplicates && (
        <Alert color="orange" title={t('registration.duplicateTitle')} role="alert" data-testid="duplicate-warning">
          <Stack gap="xs">
            <div>{t('registration.duplicateText', { count: duplicates.patients.length })}</div>
            <List>
              {duplicates.patients.map((patient) => (
                <List.Item key={patient.id}>
                  <Link to={`/patients/${patient.id}`}>{patientName(patient)}</Link>
                  {' — '}
                  {formatDate(patient.birthDate, i18n.language)}
                  {phoneOf(patient) ? `, ${phoneOf(patient)}` : ''}
                  {mrnOf(patient) ? `, ${t('patient.mrn')} ${mrnOf(patient)}` : ''}
                </List.Item>
              ))}
            </List>
            <Group>
              <Button onClick={() => create.mutate(duplicates.draft)} loading={create.isPending}>
                {t('registration.createAnyway')}
              </Button>
              <Button variant="default" onClick={() => setDuplicates(null)}>
                {t('registration.backToForm')}
              </Button>
            </Group>
          </Stack>
        </Alert>
      )}
      <PatientForm
        initial={emptyDraft()}
        mode="create"
        clinical={clinical}
        busy={check.isPending || create.isPending}
        onSubmit={(draft) => {
          setDuplicates(null);
          check.mutate(draft);
        }}
        onCancel={() => navigate('/patients')}
      />
    </Stack>
  );
}

function EditPatient({ id }: { id: string }) {
  const { t } = useTranslation();
  const navigate = useNavigate();
  const client = useFhirClient();
  const queries = useQueryClient();
  const clinical = seesClinicalRecord(useSession().user?.roles ?? []);
  const patient = useResource<Patient>('Patient', id);
  const coverage = useQuery({
    queryKey: ['search', 'coverage-of', id],
    queryFn: () => client.search<AnyResource>('Coverage', { beneficiary: id, status: 'active', _count: '1' }),
  });
  // Recorded allergies (clinical content): their status can be changed here (resolved, recorded in error...).
  const allergies = useQuery({
    enabled: clinical,
    queryKey: ['search', 'allergies-of', id],
    queryFn: () => client.search<AnyResource>('AllergyIntolerance', { patient: id, _count: '100' }),
  });
  const recorded = clinical && allergies.data ? matches(allergies.data) : [];
  const update = useMutation({
    mutationFn: (draft: PatientDraft) =>
      client.transaction(editBundle(draft, patient.data as Patient, matches(coverage.data)[0], recorded)),
    onSuccess: () => {
      void queries.invalidateQueries();
      navigate(`/patients/${id}`);
    },
  });
  if (patient.isPending || coverage.isPending || (clinical && allergies.isPending)) return <Loading label={t('common.loading')} />;
  if (patient.error || coverage.error || allergies.error) {
    return <ErrorMessage error={patient.error ?? coverage.error ?? allergies.error} />;
  }
  return (
    <Stack maw={960}>
      <Title order={2}>{t('registration.editTitle')}</Title>
      <ErrorMessage error={update.error} />
      <PatientForm
        initial={withAllergies(withCoverage(fromPatient(patient.data), matches(coverage.data)[0]), recorded)}
        mode="edit"
        clinical={clinical}
        busy={update.isPending}
        onSubmit={(draft) => update.mutate(draft)}
        onCancel={() => navigate(`/patients/${id}`)}
      />
    </Stack>
  );
}
