import { Anchor, Button, Group, Paper, Stack, Text, Title } from '@mantine/core';
import { useMemo } from 'react';
import { useTranslation } from 'react-i18next';
import { Link, Navigate, useParams } from 'react-router-dom';
import { usePagedSearch } from '../../fhir/hooks';
import type { AnyResource } from '../../fhir/types';
import { Empty, ErrorMessage, Loading } from '../shell/States';
import { SectionItem } from './SectionItem';
import { sectionByKey } from './sections';

const PAGE_SIZE = '20';

/** A summary section's full list, page by page through the server's paging links. */
export default function PatientSectionPage() {
  const { id = '', section: key } = useParams();
  const { t } = useTranslation();
  const section = sectionByKey(key);
  const now = useMemo(() => new Date().toISOString().slice(0, 16), []);
  const search = usePagedSearch<AnyResource>(section?.type ?? 'Patient', section ? { ...section.params(id, now), _count: PAGE_SIZE } : null);
  if (!section) return <Navigate to={`/patients/${id}`} replace />;
  return (
    <Stack maw={900}>
      <Anchor component={Link} to={`/patients/${id}`}>
        ← {t('summary.backToSummary')}
      </Anchor>
      <Title order={2}>{t(`summary.sections.${section.key}`)}</Title>
      <ErrorMessage error={search.error} />
      {search.isPending ? (
        <Loading label={t('common.loading')} />
      ) : search.items.length === 0 ? (
        <Empty>{t('summary.none')}</Empty>
      ) : (
        <Paper withBorder p="md">
          <Stack gap="sm" component="ul" style={{ listStyle: 'none', padding: 0, margin: 0 }}>
            {search.items.map((item) => (
              <SectionItem key={item.id} section={section} item={item} />
            ))}
          </Stack>
        </Paper>
      )}
      <Group>
        <Button variant="default" disabled={!search.hasPrevious} onClick={search.previousPage}>
          {t('common.previous')}
        </Button>
        <Text size="sm">{t('common.page', { page: search.pageNumber })}</Text>
        <Button variant="default" disabled={!search.hasNext} onClick={search.nextPage}>
          {t('common.next')}
        </Button>
      </Group>
    </Stack>
  );
}
