import { Text } from '@mantine/core';
import { useTranslation } from 'react-i18next';
import type { AnyResource } from '../../fhir/types';
import type { Section } from './sections';

/** One entry of a summary section or its full list: the section's title and detail for the resource. */
export function SectionItem({ section, item }: { section: Section; item: AnyResource }) {
  const { i18n } = useTranslation();
  const { title, detail } = section.describe(item, i18n.language);
  return (
    <li>
      <Text fw={500}>{title || '—'}</Text>
      {detail && (
        <Text size="sm" c="dimmed">
          {detail}
        </Text>
      )}
    </li>
  );
}
