import { Badge, Group, Paper, Text, Title } from '@mantine/core';
import { useTranslation } from 'react-i18next';
import { ageOn, conceptText, formatDate, mrnOf, patientName } from '../../fhir/format';
import type { AnyResource, Patient } from '../../fhir/types';

export function PatientHeader({ patient, allergies }: { patient: Patient; allergies: AnyResource[] | undefined }) {
  const { t, i18n } = useTranslation();
  const age = ageOn(patient.birthDate);
  return (
    <Paper withBorder p="md" data-testid="patient-header">
      <Group justify="space-between" wrap="wrap">
        <div>
          <Title order={2}>{patientName(patient) || t('patient.unnamed')}</Title>
          <Group gap="md" mt={4} wrap="wrap">
            <Text size="sm">
              {age !== null ? t('patient.ageYears', { count: age }) : ''} · {t(`gender.${patient.gender ?? 'unknown'}`)}
            </Text>
            <Text size="sm">
              {t('patient.birthDate')}: {formatDate(patient.birthDate, i18n.language)}
            </Text>
            <Text size="sm">
              {t('patient.mrn')}: {mrnOf(patient) ?? '—'}
            </Text>
          </Group>
        </div>
        {allergies === undefined ? null : allergies.length === 0 ? (
          <Badge color="gray" variant="light" size="lg">
            {t('summary.noKnownAllergies')}
          </Badge>
        ) : (
          <Badge color="red" size="lg" data-testid="allergy-badge" title={allergies.map((a) => conceptText(a.code as never)).join(', ')}>
            {t('summary.allergyBadge', { count: allergies.length, names: allergies.map((a) => conceptText(a.code as never)).join(', ') })}
          </Badge>
        )}
      </Group>
    </Paper>
  );
}
