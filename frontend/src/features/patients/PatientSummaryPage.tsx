import { Anchor, Button, Group, Paper, SimpleGrid, Stack, Text, Title } from '@mantine/core';
import { useQuery } from '@tanstack/react-query';
import { useMemo } from 'react';
import { useTranslation } from 'react-i18next';
import { Link, useParams } from 'react-router-dom';
import { seesClinicalRecord } from '../../auth/roles';
import { useSession } from '../../auth/session';
import { matches } from '../../fhir/client';
import { useFhirClient } from '../../fhir/context';
import { useResource } from '../../fhir/hooks';
import type { AnyResource, Bundle, Patient } from '../../fhir/types';
import { Empty, ErrorMessage, Loading } from '../shell/States';
import { PatientHeader } from './PatientHeader';
import { SectionItem } from './SectionItem';
import { SECTIONS, type Section } from './sections';

const SUMMARY_COUNT = '5';

function useSection(section: Section, patientId: string, now: string) {
  const client = useFhirClient();
  return useQuery({
    queryKey: ['search', section.key, patientId, now],
    queryFn: () => client.search<AnyResource>(section.type, { ...section.params(patientId, now), _count: SUMMARY_COUNT }),
  });
}

function SectionCard({ section, patientId, now }: { section: Section; patientId: string; now: string }) {
  const { t } = useTranslation();
  const query = useSection(section, patientId, now);
  const items = matches(query.data as Bundle<AnyResource> | undefined);
  return (
    <Paper withBorder p="md" component="section" aria-labelledby={`section-${section.key}`} data-testid={`section-${section.key}`}>
      <Group justify="space-between" mb="xs">
        <Title order={3} size="h4" id={`section-${section.key}`}>
          {t(`summary.sections.${section.key}`)}
        </Title>
        <Anchor component={Link} to={`/patients/${patientId}/${section.key}`} size="sm">
          {t('summary.seeAll', { section: t(`summary.sections.${section.key}`) })}
        </Anchor>
      </Group>
      {query.isPending ? (
        <Loading label={t('common.loading')} />
      ) : query.error ? (
        <ErrorMessage error={query.error} />
      ) : items.length === 0 ? (
        <Empty>{t('summary.none')}</Empty>
      ) : (
        <Stack gap={6} component="ul" style={{ listStyle: 'none', padding: 0, margin: 0 }}>
          {items.map((item) => (
            <SectionItem key={item.id} section={section} item={item} />
          ))}
        </Stack>
      )}
    </Paper>
  );
}

export default function PatientSummaryPage() {
  const { id = '' } = useParams();
  const { t } = useTranslation();
  const client = useFhirClient();
  const patient = useResource<Patient>('Patient', id);
  const now = useMemo(() => new Date().toISOString().slice(0, 16), []);
  const clinical = seesClinicalRecord(useSession().user?.roles ?? []);
  const allergies = useQuery({
    enabled: clinical,
    queryKey: ['search', 'allergy-badge', id],
    queryFn: () => client.search<AnyResource>('AllergyIntolerance', { patient: id, 'clinical-status': 'active', _count: '50' }),
  });
  if (patient.isPending) return <Loading label={t('common.loading')} />;
  if (patient.error) return <ErrorMessage error={patient.error} />;
  return (
    <Stack maw={1200}>
      <PatientHeader patient={patient.data} allergies={clinical && allergies.data ? matches(allergies.data) : undefined} />
      <Group>
        <Button component={Link} to={`/patients/${id}/edit`} variant="default">
          {t('summary.edit')}
        </Button>
        <Button component={Link} to={`/calendar?patient=${id}`} variant="light">
          {t('summary.book')}
        </Button>
      </Group>
      <SimpleGrid cols={{ base: 1, sm: 2, lg: 3 }}>
        {SECTIONS.filter((section) => clinical || !section.clinical).map((section) => (
          <SectionCard key={section.key} section={section} patientId={id} now={now} />
        ))}
      </SimpleGrid>
      <Text size="xs" c="dimmed">
        {t('summary.dataNote')}
      </Text>
    </Stack>
  );
}
