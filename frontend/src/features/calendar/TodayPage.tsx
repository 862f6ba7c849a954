import { Button, Group, Paper, Stack, Table, Text, Title } from '@mantine/core';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useMemo } from 'react';
import { useTranslation } from 'react-i18next';
import { Link } from 'react-router-dom';
import { useFhirClient } from '../../fhir/context';
import { conceptText } from '../../fhir/format';
import { Empty, ErrorMessage, Loading } from '../shell/States';
import { SHOWN_STATUSES, patientOf, startOfDay, type Appointment } from './model';
import { allPages } from './useCalendarData';

/** The front desk's list for today: who is coming when, and who has arrived. */
export default function TodayPage() {
  const { t, i18n } = useTranslation();
  const client = useFhirClient();
  const queries = useQueryClient();
  const [from, to] = useMemo(() => {
    const start = startOfDay(new Date());
    const end = new Date(start);
    end.setDate(end.getDate() + 1);
    return [start.toISOString(), end.toISOString()];
  }, []);
  const today = useQuery({
    queryKey: ['search', 'today', from],
    queryFn: async () => {
      const query = new URLSearchParams([
        ['date', `ge${from}`],
        ['date', `lt${to}`],
        ['status', SHOWN_STATUSES.join(',')],
        ['_sort', 'date'],
        ['_include', 'Appointment:patient'],
        ['_include', 'Appointment:practitioner'],
        ['_count', '200'],
      ]);
      const bundles = await allPages<Appointment>(client, `Appointment?${query.toString()}`);
      const names = new Map<string, string>();
      const appointments: Appointment[] = [];
      for (const entry of bundles.flatMap((b) => b.entry ?? [])) {
        const r = entry.resource as unknown as Appointment & { name?: { given?: string[]; family?: string }[] };
        if (r.resourceType === 'Appointment') appointments.push(r);
        else names.set(`${r.resourceType}/${r.id}`, [...(r.name?.[0]?.given ?? []), r.name?.[0]?.family ?? ''].join(' ').trim());
      }
      return { appointments, names };
    },
  });
  const status = useMutation({
    mutationFn: (next: Appointment) => client.update(next),
    onSuccess: () => void queries.invalidateQueries({ queryKey: ['search'] }),
  });
  const time = (iso?: string) => (iso ? new Date(iso).toLocaleTimeString(i18n.language, { hour: '2-digit', minute: '2-digit' }) : '');
  return (
    <Stack maw={1100}>
      <Title order={2}>{t('today.title')}</Title>
      <ErrorMessage error={today.error ?? status.error} />
      {today.isPending ? (
        <Loading label={t('common.loading')} />
      ) : !today.data?.appointments.length ? (
        <Empty>{t('today.empty')}</Empty>
      ) : (
        <Paper withBorder>
          <Table striped verticalSpacing="xs" data-testid="today-list">
            <Table.Thead>
              <Table.Tr>
                <Table.Th>{t('today.time')}</Table.Th>
                <Table.Th>{t('today.patient')}</Table.Th>
                <Table.Th>{t('today.with')}</Table.Th>
                <Table.Th>{t('today.visitType')}</Table.Th>
                <Table.Th>{t('today.status')}</Table.Th>
                <Table.Th>{t('today.actions')}</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {today.data.appointments.map((appointment) => {
                const patient = patientOf(appointment);
                const who = (appointment.participant ?? [])
                  .map((p) => p.actor?.reference)
                  .filter((ref): ref is string => Boolean(ref?.startsWith('Practitioner/')))
                  .map((ref) => today.data.names.get(ref) ?? '')
                  .join(', ');
                return (
                  <Table.Tr key={appointment.id}>
                    <Table.Td>{time(appointment.start)}–{time(appointment.end)}</Table.Td>
                    <Table.Td>
                      {patient?.reference ? (
                        <Link to={`/patients/${patient.reference.replace('Patient/', '')}`}>{today.data.names.get(patient.reference) || patient.display}</Link>
                      ) : null}
                    </Table.Td>
                    <Table.Td>{who}</Table.Td>
                    <Table.Td>{conceptText(appointment.serviceType?.[0])}</Table.Td>
                    <Table.Td>
                      <Text size="sm">{t(`calendar.statuses.${appointment.status}`)}</Text>
                    </Table.Td>
                    <Table.Td>
                      {appointment.status === 'booked' && (
                        <Group gap={4} wrap="nowrap">
                          <Button size="compact-xs" variant="default" onClick={() => status.mutate({ ...appointment, status: 'arrived' })}>
                            {t('calendar.markArrived')}
                          </Button>
                          <Button size="compact-xs" variant="default" onClick={() => status.mutate({ ...appointment, status: 'noshow' })}>
                            {t('calendar.markNoShow')}
                          </Button>
                        </Group>
                      )}
                    </Table.Td>
                  </Table.Tr>
                );
              })}
            </Table.Tbody>
          </Table>
        </Paper>
      )}
    </Stack>
  );
}
