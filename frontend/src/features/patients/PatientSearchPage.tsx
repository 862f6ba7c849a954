import { Button, Group, Paper, Stack, Text, TextInput, Title } from '@mantine/core';
import { memo, useState, type KeyboardEvent } from 'react';
import { useTranslation } from 'react-i18next';
import { Link, useNavigate } from 'react-router-dom';
import { ageOn, formatDate, mrnOf, patientName, phoneOf } from '../../fhir/format';
import { Empty, ErrorMessage, Loading } from '../shell/States';
import { usePatientSearch } from './usePatientSearch';
import type { Patient } from '../../fhir/types';

export default function PatientSearchPage() {
  const { t } = useTranslation();
  const navigate = useNavigate();
  const [text, setText] = useState('');
  const [activeIndex, setActiveIndex] = useState(0);
  const search = usePatientSearch(text);
  const patients = search.patients;
  const active = Math.min(activeIndex, Math.max(0, patients.length - 1));

  const onKeyDown = (event: KeyboardEvent<HTMLInputElement>) => {
    if (event.key === 'ArrowDown') {
      event.preventDefault();
      setActiveIndex(Math.min(active + 1, patients.length - 1));
    } else if (event.key === 'ArrowUp') {
      event.preventDefault();
      setActiveIndex(Math.max(active - 1, 0));
    } else if (event.key === 'Enter' && patients[active]?.id) {
      navigate(`/patients/${patients[active].id}`);
    }
  };

  return (
    <Stack maw={1100}>
      <Group justify="space-between">
        <Title order={2}>{t('search.title')}</Title>
        <Button component={Link} to="/patients/new">
          {t('search.register')}
        </Button>
      </Group>
      <TextInput
        label={t('search.label')}
        description={t('search.hint')}
        placeholder={t('search.placeholder')}
        value={text}
        onChange={(event) => {
          setText(event.currentTarget.value);
          setActiveIndex(0);
        }}
        onKeyDown={onKeyDown}
        autoFocus
        size="md"
        role="combobox"
        aria-expanded={patients.length > 0}
        aria-controls="patient-results"
        aria-activedescendant={patients[active]?.id ? `patient-${patients[active].id}` : undefined}
        aria-autocomplete="list"
        data-testid="patient-search"
      />
      <div aria-live="polite" className="visually-hidden" style={{ position: 'absolute', left: -9999 }}>
        {search.active && !search.searching ? t('search.resultCount', { count: patients.length }) : ''}
      </div>
      {search.error ? <ErrorMessage error={search.error} /> : null}
      {!search.active ? (
        <Empty>{t('search.startTyping')}</Empty>
      ) : search.isPending ? (
        <Loading label={t('search.searching')} />
      ) : patients.length === 0 && !search.searching ? (
        <div data-results-for={search.shownTerm}>
          <Empty>{t('search.noResults', { term: search.term })}</Empty>
        </div>
      ) : (
        <Paper withBorder>
          <ResultList
            patients={patients}
            active={active}
            searching={search.searching}
            shownTerm={search.shownTerm}
            onOpen={(id) => navigate(`/patients/${id}`)}
            onHover={setActiveIndex}
          />
        </Paper>
      )}
      {search.hasMore && (
        <Button variant="default" onClick={search.showMore} loading={search.searching}>
          {t('common.showMore')}
        </Button>
      )}
    </Stack>
  );
}

interface ResultListProps {
  patients: Patient[];
  active: number;
  searching: boolean;
  shownTerm: string | undefined;
  onOpen: (id: string) => void;
  onHover: (index: number) => void;
}

/** The results; memoized so that typing (which re-renders the page on every key) does not redraw them. */
const ResultList = memo(
  function ResultList({ patients, active, searching, shownTerm, onOpen, onHover }: ResultListProps) {
    const { t, i18n } = useTranslation();
    return (
      <div
        id="patient-results"
        role="listbox"
        aria-label={t('search.results')}
        aria-busy={searching}
        data-testid="patient-results"
        data-results-for={shownTerm}
      >
        {patients.map((patient, index) => (
          <div
            key={patient.id}
            id={`patient-${patient.id}`}
            role="option"
            aria-selected={index === active}
            tabIndex={-1}
            className="result-row"
            onClick={() => patient.id && onOpen(patient.id)}
            onMouseEnter={() => onHover(index)}
            style={{ padding: '8px 12px', borderBottom: '1px solid var(--mantine-color-gray-2)' }}
          >
            <Group justify="space-between" wrap="wrap" gap="xs">
              <Text fw={600}>{patientName(patient) || t('patient.unnamed')}</Text>
              <Group gap="lg" wrap="wrap">
                <Text size="sm">
                  {t('patient.birthDate')}: {formatDate(patient.birthDate, i18n.language)}
                  {patient.birthDate ? ` (${t('patient.ageYears', { count: ageOn(patient.birthDate) ?? 0 })})` : ''}
                </Text>
                {mrnOf(patient) && (
                  <Text size="sm">
                    {t('patient.mrn')}: {mrnOf(patient)}
                  </Text>
                )}
                {phoneOf(patient) && (
                  <Text size="sm">
                    {t('patient.phone')}: {phoneOf(patient)}
                  </Text>
                )}
              </Group>
            </Group>
          </div>
        ))}
      </div>
    );
  },
  // The open handler is a new function on every render of the page; what it does never changes.
  (before, after) =>
    before.patients === after.patients &&
    before.active === after.active &&
    before.searching === after.searching &&
    before.shownTerm === after.shownTerm,
);
