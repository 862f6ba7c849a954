import { Alert, Button, Group, Modal, NativeSelect, Radio, Stack, Text, TextInput, Textarea } from '@mantine/core';
import { useState } from 'react';
import { useTranslation } from 'react-i18next';
import { formatDate, patientName } from '../../fhir/format';
import type { Patient, Reference } from '../../fhir/types';
import { usePatientSearch } from '../patients/usePatientSearch';
import type { CalendarColumn, VisitType } from './model';

export interface BookingChoice {
  patient: Reference;
  visitType: VisitType | undefined;
  minutes: number;
  comment: string;
  weeks: number;
}

interface Props {
  column: CalendarColumn;
  start: Date;
  visitTypes: VisitType[];
  initialPatient: Patient | undefined;
  busy: boolean;
  error: React.ReactNode;
  onBook: (choice: BookingChoice) => void;
  onClose: () => void;
}

/** Book a free slot: find the patient inline, pick the visit type, add notes, optionally repeat weekly. */
export function BookingDialog({ column, start, visitTypes, initialPatient, busy, error, onBook, onClose }: Props) {
  const { t, i18n } = useTranslation();
  const [text, setText] = useState('');
  const [chosen, setChosen] = useState<Patient | undefined>(initialPatient);
  const [visitCode, setVisitCode] = useState(visitTypes[0]?.code ?? '');
  const [comment, setComment] = useState('');
  const [repeat, setRepeat] = useState<'none' | 'weekly'>('none');
  const [weeks, setWeeks] = useState('4');
  const [missingPatient, setMissingPatient] = useState(false);
  const search = usePatientSearch(text);
  const visitType = visitTypes.find((v) => v.code === visitCode);
  const options = chosen && !search.patients.some((p) => p.id === chosen.id) ? [chosen, ...search.patients] : search.patients;
  const when = start.toLocaleString(i18n.language, { dateStyle: 'full', timeStyle: 'short' });

  return (
    <Modal closeButtonProps={{ 'aria-label': t('common.close') }} opened onClose={onClose} title={t('calendar.book')} size="lg">
      <Stack>
        <Text>
          <strong>{column.label}</strong> · {when}
        </Text>
        {error}
        <TextInput
          label={t('calendar.findPatient')}
          placeholder={t('search.placeholder')}
          value={text}
          onChange={(event) => setText(event.currentTarget.value)}
          data-autofocus
          data-testid="booking-patient-search"
        />
        <Radio.Group
          label={t('calendar.patient')}
          value={chosen?.id ?? ''}
          onChange={(id) => {
            setChosen(options.find((p) => p.id === id));
            setMissingPatient(false);
          }}
          error={missingPatient ? t('calendar.choosePatient') : undefined}
        >
          <Stack gap={4} mt={4} mah={180} style={{ overflowY: 'auto' }}>
            {options.length === 0 ? (
              <Text size="sm" c="dimmed">
                {search.active ? (search.searching ? t('search.searching') : t('search.noResults', { term: search.term })) : t('search.startTyping')}
              </Text>
            ) : (
              options.slice(0, 8).map((patient) => (
                <Radio
                  key={patient.id}
                  value={patient.id ?? ''}
                  label={`${patientName(patient)} · ${formatDate(patient.birthDate, i18n.language)}`}
                />
              ))
            )}
          </Stack>
        </Radio.Group>
        <NativeSelect
          label={t('calendar.visitType')}
          value={visitCode}
          onChange={(event) => setVisitCode(event.currentTarget.value)}
          data={visitTypes.map((v) => ({ value: v.code, label: `${v.name} (${t('calendar.minutes', { count: v.minutes })})` }))}
        />
        <Textarea label={t('calendar.notes')} value={comment} onChange={(event) => setComment(event.currentTarget.value)} autosize minRows={2} />
        <Group grow>
          <NativeSelect
            label={t('calendar.repeat')}
            value={repeat}
            onChange={(event) => setRepeat(event.currentTarget.value as 'none' | 'weekly')}
            data={[
              { value: 'none', label: t('calendar.repeatNone') },
              { value: 'weekly', label: t('calendar.repeatWeekly') },
            ]}
          />
          {repeat === 'weekly' && (
            <TextInput label={t('calendar.occurrences')} type="number" min={2} max={52} value={weeks} onChange={(event) => setWeeks(event.currentTarget.value)} />
          )}
        </Group>
        {visitTypes.length === 0 && <Alert color="yellow">{t('calendar.visitType')}: —</Alert>}
        <Group justify="flex-end">
          <Button variant="default" onClick={onClose}>
            {t('common.cancel')}
          </Button>
          <Button
            loading={busy}
            onClick={() => {
              if (!chosen?.id) {
                setMissingPatient(true);
                return;
              }
              onBook({
                patient: { reference: `Patient/${chosen.id}`, display: patientName(chosen) },
                visitType,
                minutes: visitType?.minutes ?? 20,
                comment,
                weeks: repeat === 'weekly' ? Math.min(52, Math.max(2, Number(weeks) || 2)) : 1,
              });
            }}
          >
            {t('calendar.confirmBook')}
          </Button>
        </Group>
      </Stack>
    </Modal>
  );
}
