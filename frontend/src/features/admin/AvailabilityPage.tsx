import { ActionIcon, Alert, Button, Checkbox, Fieldset, Group, NativeSelect, Paper, Stack, Text, TextInput, Title } from '@mantine/core';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { isAdmin } from '../../auth/roles';
import { useSession } from '../../auth/session';
import { matches } from '../../fhir/client';
import { useFhirClient } from '../../fhir/context';
import { formatName } from '../../fhir/format';
import type { AnyResource, HumanName, Reference } from '../../fhir/types';
import { visitTypesOf } from '../calendar/model';
import { Empty, ErrorMessage, Loading } from '../shell/States';
import { DAYS, applyDraft, draftOf, problemsOf, type AvailabilityDraft, type Day } from './availability';

/** Admins set each practitioner's working hours, absences and visit types (PractitionerRole). */
export default function AvailabilityPage() {
  const { t } = useTranslation();
  const client = useFhirClient();
  const admin = isAdmin(useSession().user?.roles ?? []);
  const roles = useQuery({
    queryKey: ['search', 'practitioner-roles'],
    queryFn: () => client.search('PractitionerRole', { _include: 'PractitionerRole:practitioner', _count: '200' }),
    enabled: admin,
  });
  const services = useQuery({
    queryKey: ['search', 'visit-types'],
    queryFn: () => client.search('HealthcareService', { active: 'true', _count: '200' }),
    enabled: admin,
  });
  const [selected, setSelected] = useState<string>('');
  if (!admin) return <Alert color="yellow">{t('availability.adminOnly')}</Alert>;
  if (roles.isPending) return <Loading label={t('common.loading')} />;
  const entries = (roles.data?.entry ?? []).map((e) => e.resource as AnyResource);
  const names = new Map(entries.filter((r) => r.resourceType === 'Practitioner').map((p) => [`Practitioner/${p.id}`, formatName((p.name as HumanName[] | undefined)?.[0])]));
  const practitionerRoles = matches(roles.data as never) as unknown as AnyResource[];
  const label = (role: AnyResource) => names.get((role.practitioner as Reference | undefined)?.reference ?? '') || (role.practitioner as Reference | undefined)?.display || String(role.id);
  const current = practitionerRoles.find((r) => r.id === selected) ?? practitionerRoles[0];
  return (
    <Stack maw={900}>
      <Title order={2}>{t('availability.title')}</Title>
      <ErrorMessage error={roles.error ?? services.error} />
      {practitionerRoles.length === 0 ? (
        <Empty>{t('availability.none')}</Empty>
      ) : (
        <>
          <NativeSelect
            label={t('availability.practitioner')}
            value={current?.id ?? ''}
            onChange={(event) => setSelected(event.currentTarget.value)}
            data={practitionerRoles.map((role) => ({ value: role.id as string, label: label(role) }))}
          />
          {current && <AvailabilityForm key={current.id as string} role={current} visitTypes={visitTypesOf(services.data)} />}
        </>
      )}
    </Stack>
  );
}

function AvailabilityForm({ role, visitTypes }: { role: AnyResource; visitTypes: ReturnType<typeof visitTypesOf> }) {
  const { t } = useTranslation();
  const client = useFhirClient();
  const queries = useQueryClient();
  const [draft, setDraft] = useState<AvailabilityDraft>(() => draftOf(role));
  const [tried, setTried] = useState(false);
  const problems = problemsOf(draft);
  const save = useMutation({
    mutationFn: () => client.update(applyDraft(role, draft)),
    onSuccess: () => void queries.invalidateQueries({ queryKey: ['search'] }),
  });
  const set = (patch: Partial<AvailabilityDraft>) => {
    save.reset();
    setDraft((d) => ({ ...d, ...patch }));
  };
  return (
    <Paper withBorder p="md">
      <Stack>
        <Fieldset legend={t('availability.workingHours')}>
          <Stack gap="xs">
            {draft.hours.map((row, i) => (
              <Group key={i} align="flex-end" wrap="wrap">
                <NativeSelect
                  label={t('availability.day')}
                  value={row.day}
                  onChange={(e) => set({ hours: draft.hours.map((r, j) => (j === i ? { ...r, day: e.currentTarget.value as Day } : r)) })}
                  data={DAYS.map((d) => ({ value: d, label: t(`availability.days.${d}`) }))}
                />
                <TextInput label={t('availability.from')} type="time" value={row.from} onChange={(e) => set({ hours: draft.hours.map((r, j) => (j === i ? { ...r, from: e.currentTarget.value } : r)) })} error={tried && problems[`hours.${i}`] ? t(problems[`hours.${i}`]!) : undefined} />
                <TextInput label={t('availability.to')} type="time" value={row.to} onChange={(e) => set({ hours: draft.hours.map((r, j) => (j === i ? { ...r, to: e.currentTarget.value } : r)) })} />
                <ActionIcon variant="subtle" color="red" mb={4} aria-label={`${t('availability.remove')} ${t(`availability.days.${row.day}`)} ${row.from}`} onClick={() => set({ hours: draft.hours.filter((_, j) => j !== i) })}>
                  ✕
                </ActionIcon>
              </Group>
            ))}
            <Button variant="default" w="fit-content" onClick={() => set({ hours: [...draft.hours, { day: 'mon', from: '09:00', to: '17:00' }] })}>
              {t('availability.addHours')}
            </Button>
          </Stack>
        </Fieldset>
        <Fieldset legend={t('availability.absences')}>
          <Stack gap="xs">
            {draft.absences.map((row, i) => (
              <Group key={i} align="flex-end" wrap="wrap">
                <TextInput label={t('availability.absenceDescription')} value={row.description} onChange={(e) => set({ absences: draft.absences.map((r, j) => (j === i ? { ...r, description: e.currentTarget.value } : r)) })} error={tried && problems[`absences.${i}`] ? t(problems[`absences.${i}`]!) : undefined} />
                <TextInput label={t('availability.absenceFrom')} type="date" value={row.from} onChange={(e) => set({ absences: draft.absences.map((r, j) => (j === i ? { ...r, from: e.currentTarget.value } : r)) })} />
                <TextInput label={t('availability.absenceTo')} type="date" value={row.to} onChange={(e) => set({ absences: draft.absences.map((r, j) => (j === i ? { ...r, to: e.currentTarget.value } : r)) })} />
                <ActionIcon variant="subtle" color="red" mb={4} aria-label={`${t('availability.remove')} ${row.description}`} onClick={() => set({ absences: draft.absences.filter((_, j) => j !== i) })}>
                  ✕
                </ActionIcon>
              </Group>
            ))}
            <Button variant="default" w="fit-content" onClick={() => set({ absences: [...draft.absences, { description: '', from: '', to: '' }] })}>
              {t('availability.addAbsence')}
            </Button>
          </Stack>
        </Fieldset>
        <Fieldset legend={t('availability.visitTypes')}>
          <Stack gap={4}>
            {visitTypes.map((visit) => (
              <Checkbox
                key={visit.id}
                label={`${visit.name} (${t('calendar.minutes', { count: visit.minutes })})`}
                checked={draft.services.includes(visit.id)}
                onChange={(e) => set({ services: e.currentTarget.checked ? [...draft.services, visit.id] : draft.services.filter((id) => id !== visit.id) })}
              />
            ))}
          </Stack>
        </Fieldset>
        <ErrorMessage error={save.error} />
        {save.isSuccess && <Text role="status" c="green.9">{t('availability.saved')}</Text>}
        <Group justify="flex-end">
          <Button
            loading={save.isPending}
            onClick={() => {
              setTried(true);
              if (Object.keys(problems).length === 0) save.mutate();
            }}
          >
            {t('common.save')}
          </Button>
        </Group>
      </Stack>
    </Paper>
  );
}
