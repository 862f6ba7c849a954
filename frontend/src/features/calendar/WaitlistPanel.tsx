import { Paper, Stack, Text, Title } from '@mantine/core';
import { useQuery } from '@tanstack/react-query';
import { useTranslation } from 'react-i18next';
import { matches } from '../../fhir/client';
import { useFhirClient } from '../../fhir/context';
import { conceptText, formatDateTime } from '../../fhir/format';
import { patientOf, type Appointment } from './model';

function useAppointments(status: string) {
  const client = useFhirClient();
  return useQuery({
    queryKey: ['search', 'appointments-by-status', status],
    queryFn: () => client.search<Appointment>('Appointment', { status, _count: '50', _include: 'Appointment:patient' }),
  });
}

/** Who waits for a time (status `waitlist`) and the offers held for them (`pending` holds). */
export function WaitlistPanel() {
  const { t, i18n } = useTranslation();
  const waiting = useAppointments('waitlist');
  const offers = useAppointments('pending');
  const names = (bundle: typeof waiting.data) => {
    const map = new Map<string, string>();
    for (const entry of bundle?.entry ?? []) {
      const r = entry.resource as unknown as { resourceType: string; id: string; name?: { given?: string[]; family?: string }[] };
      if (r?.resourceType === 'Patient') map.set(`Patient/${r.id}`, [...(r.name?.[0]?.given ?? []), r.name?.[0]?.family ?? ''].join(' ').trim());
    }
    return map;
  };
  const row = (appointment: Appointment, map: Map<string, string>) => {
    const patient = patientOf(appointment);
    const name = (patient?.reference && map.get(patient.reference)) || patient?.display || '';
    const period = appointment.requestedPeriod?.[0];
    const when = appointment.start
      ? formatDateTime(appointment.start, i18n.language)
      : t('calendar.requested', { period: [formatDateTime(period?.start, i18n.language), formatDateTime(period?.end, i18n.language)].filter(Boolean).join(' – ') });
    return (
      <li key={appointment.id}>
        <Text size="sm" fw={500}>{name}</Text>
        <Text size="xs" c="dimmed">
          {[conceptText(appointment.serviceType?.[0]), when].filter(Boolean).join(' · ')}
        </Text>
      </li>
    );
  };
  const list = (data: typeof waiting.data, empty: string) => {
    const items = matches(data);
    if (!items.length) return <Text size="sm" c="dimmed">{empty}</Text>;
    const map = names(data);
    return <Stack gap={6} component="ul" style={{ listStyle: 'none', margin: 0, padding: 0 }}>{items.map((a) => row(a, map))}</Stack>;
  };
  return (
    <Paper withBorder p="sm" component="aside" aria-labelledby="waitlist-title" data-testid="waitlist-panel">
      <Title order={3} size="h5" id="waitlist-title">{t('calendar.waitlist')}</Title>
      {list(waiting.data, t('calendar.waitlistEmpty'))}
      <Title order={3} size="h5" mt="md">{t('calendar.offers')}</Title>
      {list(offers.data, t('calendar.offersEmpty'))}
    </Paper>
  );
}
