import { Group, Text } from '@mantine/core';
import { useTranslation } from 'react-i18next';
import { PALETTE, type CalendarColumn, type VisitType } from './model';

export function Legend({ colourBy, columns, visitTypes }: { colourBy: 'practitioner' | 'visit-type'; columns: CalendarColumn[]; visitTypes: VisitType[] }) {
  const { t } = useTranslation();
  const items =
    colourBy === 'practitioner'
      ? columns.map((c) => ({ key: c.scheduleId, label: c.label, colour: PALETTE[c.colourIndex]! }))
      : visitTypes.map((v, i) => ({ key: v.code, label: v.name, colour: PALETTE[i % PALETTE.length]! }));
  return (
    <Group gap="md" wrap="wrap" aria-label={t('calendar.legend')} role="list" data-testid="calendar-legend">
      <Text size="xs" fw={600}>
        {t('calendar.legend')}:
      </Text>
      {items.map((item) => (
        <Group key={item.key} gap={4} role="listitem">
          <span className="calendar-swatch" style={{ background: item.colour }} aria-hidden />
          <Text size="xs">{item.label}</Text>
        </Group>
      ))}
      <Group gap={4} role="listitem">
        <span className="calendar-swatch" style={{ background: '#ebfbee', border: '1px dashed #2b8a3e' }} aria-hidden />
        <Text size="xs">{t('calendar.free')}</Text>
      </Group>
    </Group>
  );
}
