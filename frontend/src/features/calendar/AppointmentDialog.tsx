import { Button, Group, Modal, Stack, Text, Textarea } from '@mantine/core';
import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { Link } from 'react-router-dom';
import { patientOf, type Appointment } from './model';

interface Props {
  appointment: Appointment;
  patientName: string;
  practitioner: string;
  busy: boolean;
  error: React.ReactNode;
  onStatus: (status: 'arrived' | 'noshow') => void;
  onCancel: (reason: string) => void;
  onClose: () => void;
}

/** An appointment's details: mark arrived or no-show, or cancel it with a reason. */
export function AppointmentDialog({ appointment, patientName, practitioner, busy, error, onStatus, onCancel, onClose }: Props) {
  const { t, i18n } = useTranslation();
  const [cancelling, setCancelling] = useState(false);
  const [reason, setReason] = useState('');
  const [reasonMissing, setReasonMissing] = useState(false);
  const patient = patientOf(appointment);
  const range = appointment.start
    ? `${new Date(appointment.start).toLocaleString(i18n.language, { dateStyle: 'full', timeStyle: 'short' })} – ${new Date(appointment.end ?? appointment.start).toLocaleTimeString(i18n.language, { timeStyle: 'short' })}`
    : '';
  const open = appointment.status === 'booked' || appointment.status === 'pending';
  return (
    <Modal closeButtonProps={{ 'aria-label': t('common.close') }} opened onClose={onClose} title={t('calendar.appointment')} size="lg">
      <Stack>
        {error}
        <Text>
          <strong>{t('calendar.patient')}:</strong>{' '}
          {patient?.reference ? <Link to={`/${patient.reference.replace('Patient/', 'patients/')}`}>{patientName}</Link> : patientName}
        </Text>
        <Text>
          <strong>{t('calendar.with')}:</strong> {practitioner}
        </Text>
        <Text>
          <strong>{t('calendar.when')}:</strong> {range}
        </Text>
        <Text>
          <strong>{t('calendar.status')}:</strong> {t(`calendar.statuses.${appointment.status}`)}
        </Text>
        {appointment.comment && (
          <Text>
            <strong>{t('calendar.notes')}:</strong> {appointment.comment}
          </Text>
        )}
        {cancelling ? (
          <>
            <Textarea
              label={t('calendar.cancelReason')}
              value={reason}
              onChange={(event) => {
                setReason(event.currentTarget.value);
                setReasonMissing(false);
              }}
              error={reasonMissing ? t('calendar.reasonRequired') : undefined}
              required
              data-autofocus
            />
            <Group justify="flex-end">
              <Button variant="default" onClick={() => setCancelling(false)}>
                {t('common.cancel')}
              </Button>
              <Button
                color="red.9"
                loading={busy}
                onClick={() => (reason.trim() ? onCancel(reason.trim()) : setReasonMissing(true))}
              >
                {t('calendar.confirmCancel')}
              </Button>
            </Group>
          </>
        ) : (
          <Group justify="flex-end">
            {appointment.status === 'booked' && (
              <>
                <Button variant="default" loading={busy} onClick={() => onStatus('noshow')}>
                  {t('calendar.markNoShow')}
                </Button>
                <Button variant="default" loading={busy} onClick={() => onStatus('arrived')}>
                  {t('calendar.markArrived')}
                </Button>
              </>
            )}
            {appointment.status === 'noshow' && (
              <Button variant="default" loading={busy} onClick={() => onStatus('arrived')}>
                {t('calendar.markArrived')}
              </Button>
            )}
            {open && (
              <Button color="red.9" onClick={() => setCancelling(true)}>
                {t('calendar.cancelAppointment')}
              </Button>
            )}
          </Group>
        )}
      </Stack>
    </Modal>
  );
}
