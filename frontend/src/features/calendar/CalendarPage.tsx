import { Alert, Box, Button, Group, SegmentedControl, Stack, Text, Title } from '@mantine/core';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useMemo, useState } from 'react';
import { useTranslation } from 'react-i18next';
import { useSearchParams } from 'react-router-dom';
import { useFhirClient } from '../../fhir/context';
import { useResource } from '../../fhir/hooks';
import type { Bundle, Patient } from '../../fhir/types';
import { ErrorMessage, Loading } from '../shell/States';
import { AppointmentDialog } from './AppointmentDialog';
import { BookingDialog, type BookingChoice } from './BookingDialog';
import { CalendarGrid } from './CalendarGrid';
import { Legend } from './Legend';
import {
  columnsOfAppointment,
  newAppointment,
  patientOf,
  rescheduled,
  viewDays,
  weeklySeries,
  type Appointment,
  type CalendarColumn,
} from './model';
import { useCalendarRange, useScheduleSetup } from './useCalendarData';
import { WaitlistPanel } from './WaitlistPanel';

type View = 'day' | 'week';

export default function CalendarPage() {
  const { t, i18n } = useTranslation();
  const client = useFhirClient();
  const queries = useQueryClient();
  const [params, setParams] = useSearchParams();
  const view = (params.get('view') === 'week' ? 'week' : 'day') as View;
  const anchor = useMemo(() => (params.get('date') ? new Date(`${params.get('date')}T00:00:00`) : new Date()), [params]);
  const [colourBy, setColourBy] = useState<'practitioner' | 'visit-type'>('practitioner');
  const [booking, setBooking] = useState<{ column: CalendarColumn; start: Date } | null>(null);
  const [opened, setOpened] = useState<Appointment | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const preselected = useResource<Patient>('Patient', params.get('patient') ?? undefined);

  const setup = useScheduleSetup();
  const days = useMemo(() => viewDays(anchor, view), [anchor, view]);
  const from = days[0]!;
  const to = useMemo(() => {
    const end = new Date(days.at(-1)!);
    end.setDate(end.getDate() + 1);
    return end;
  }, [days]);
  const range = useCalendarRange(setup.columns.map((c) => c.scheduleId), from, to);
  const appointments = range.appointments.data?.appointments ?? [];
  const patientNames = range.appointments.data?.patients ?? new Map<string, string>();

  const refresh = () => void queries.invalidateQueries({ queryKey: ['search'] });
  const move = useMutation({
    mutationFn: (next: Appointment) => client.update(next),
    onSuccess: (saved) => {
      setNotice(t('calendar.reschedule', { time: new Date(saved.start as string).toLocaleString(i18n.language, { dateStyle: 'medium', timeStyle: 'short' }) }));
      refresh();
    },
    onError: refresh,
  });
  const book = useMutation({
    mutationFn: async ({ choice, column, start }: { choice: BookingChoice; column: CalendarColumn; start: Date }) => {
      const first = newAppointment({ patient: choice.patient, column, start: start.toISOString(), visitType: choice.visitType, minutes: choice.minutes, comment: choice.comment });
      if (choice.weeks <= 1) return { booked: 1, total: 1, result: await client.create(first) };
      const response = await client.operation<Bundle>('Appointment/$book', weeklySeries(first, choice.weeks));
      const booked = response.entry?.filter((e) => e.response?.status?.startsWith('201')).length ?? 0;
      return { booked, total: choice.weeks, result: response };
    },
    onSuccess: ({ booked, total }) => {
      setBooking(null);
      setNotice(total > 1 ? t('calendar.recurringResult', { booked, total }) : t('calendar.booked'));
      refresh();
    },
  });
  const change = useMutation({
    mutationFn: (next: Appointment) => client.update(next),
    onSuccess: () => {
      setOpened(null);
      refresh();
    },
  });

  const go = (next: { view?: View; date?: Date }) => {
    const date = next.date ?? anchor;
    const value = `${date.getFullYear()}-${String(date.getMonth() + 1).padStart(2, '0')}-${String(date.getDate()).padStart(2, '0')}`;
    const nextParams = new URLSearchParams(params);
    nextParams.set('view', next.view ?? view);
    nextParams.set('date', value);
    setParams(nextParams, { replace: true });
  };
  const step = (direction: number) => {
    const date = new Date(anchor);
    date.setDate(date.getDate() + direction * (view === 'week' ? 7 : 1));
    go({ date });
  };
  const title =
    view === 'day'
      ? anchor.toLocaleDateString(i18n.language, { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' })
      : `${days[0]!.toLocaleDateString(i18n.language, { month: 'short', day: 'numeric' })} – ${days.at(-1)!.toLocaleDateString(i18n.language, { month: 'short', day: 'numeric', year: 'numeric' })}`;
  const openedColumn = opened ? columnsOfAppointment(opened, setup.columns)[0] : undefined;
  const openedPatient = opened ? patientOf(opened) : undefined;

  return (
    <Stack gap="sm">
      <Group justify="space-between" wrap="wrap">
        <Group gap="xs" wrap="wrap">
          <Title order={2}>{t('calendar.title')}</Title>
          <Button variant="default" size="xs" onClick={() => go({ date: new Date() })}>
            {t('calendar.today')}
          </Button>
          <Button variant="default" size="xs" onClick={() => step(-1)} aria-label={t('calendar.previous')}>
            ‹
          </Button>
          <Button variant="default" size="xs" onClick={() => step(1)} aria-label={t('calendar.next')}>
            ›
          </Button>
          <Text fw={600} data-testid="calendar-title">
            {title}
          </Text>
        </Group>
        <Group gap="xs" wrap="wrap">
          <SegmentedControl
            size="xs"
            value={view}
            onChange={(value) => go({ view: value as View })}
            data={[
              { value: 'day', label: t('calendar.day') },
              { value: 'week', label: t('calendar.week') },
            ]}
            aria-label={t('calendar.title')}
          />
          <SegmentedControl
            size="xs"
            value={colourBy}
            onChange={(value) => setColourBy(value as 'practitioner' | 'visit-type')}
            data={[
              { value: 'practitioner', label: t('calendar.byPractitioner') },
              { value: 'visit-type', label: t('calendar.byVisitType') },
            ]}
            aria-label={t('calendar.colourBy')}
          />
        </Group>
      </Group>
      <Legend colourBy={colourBy} columns={setup.columns} visitTypes={setup.visitTypes} />
      <div aria-live="polite">{notice && <Alert color="green" withCloseButton onClose={() => setNotice(null)} closeButtonLabel={t('common.close')}>{notice}</Alert>}</div>
      {!booking && <ErrorMessage error={move.error ?? range.appointments.error ?? range.slots.error ?? setup.error} />}
      <Group align="flex-start" wrap="nowrap" gap="sm">
        <Box style={{ flex: 1, minWidth: 0 }}>
          {setup.isPending || range.appointments.isPending || (range.slots.isPending && setup.columns.length > 0) ? (
            <Loading label={t('calendar.loadingSchedule')} />
          ) : setup.columns.length === 0 ? (
            <Text c="dimmed">{t('calendar.noSchedules')}</Text>
          ) : (
            <CalendarGrid
              days={days}
              columns={setup.columns}
              slots={range.slots.data ?? []}
              appointments={appointments}
              patientNames={patientNames}
              visitTypes={setup.visitTypes}
              colourBy={colourBy}
              onBook={(column, start) => {
                book.reset();
                setBooking({ column, start });
              }}
              onOpen={(appointment) => {
                change.reset();
                setOpened(appointment);
              }}
              onMove={(appointment, start, minutes, fromColumn, toColumn) => {
                setNotice(null);
                move.mutate(rescheduled(appointment, start.toISOString(), minutes, fromColumn, toColumn));
              }}
            />
          )}
        </Box>
        <Box w={240} visibleFrom="lg">
          <WaitlistPanel />
        </Box>
      </Group>
      {booking && (
        <BookingDialog
          column={booking.column}
          start={booking.start}
          visitTypes={setup.visitTypes}
          initialPatient={preselected.data}
          busy={book.isPending}
          error={<ErrorMessage error={book.error} />}
          onBook={(choice) => book.mutate({ choice, column: booking.column, start: booking.start })}
          onClose={() => setBooking(null)}
        />
      )}
      {opened && (
        <AppointmentDialog
          appointment={opened}
          patientName={(openedPatient?.reference && patientNames.get(openedPatient.reference)) || openedPatient?.display || ''}
          practitioner={openedColumn?.label ?? ''}
          busy={change.isPending}
          error={<ErrorMessage error={change.error} />}
          onStatus={(status) => change.mutate({ ...opened, status })}
          onCancel={(reason) => change.mutate({ ...opened, status: 'cancelled', cancelationReason: { text: reason } })}
          onClose={() => setOpened(null)}
        />
      )}
    </Stack>
  );
}
