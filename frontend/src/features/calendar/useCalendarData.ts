import { useQuery } from '@tanstack/react-query';
import { useMemo } from 'react';
import { linkOf, matches, type FhirClient } from '../../fhir/client';
import { useFhirClient } from '../../fhir/context';
import type { Bundle, Resource } from '../../fhir/types';
import { SHOWN_STATUSES, columnsOf, visitTypesOf, type Appointment, type Slot } from './model';

const PAGE = '500';

/** Every page of a search, following `next` links (bounded, so a huge range cannot run away). */
export async function allPages<T extends Resource>(client: FhirClient, first: string, maxPages = 20): Promise<Bundle<T>[]> {
  const bundles: Bundle<T>[] = [];
  let url: string | undefined = first;
  while (url && bundles.length < maxPages) {
    const bundle: Bundle<T> = await client.page<T>(url);
    bundles.push(bundle);
    url = linkOf(bundle, 'next');
  }
  return bundles;
}

export function useScheduleSetup() {
  const client = useFhirClient();
  const schedules = useQuery({
    queryKey: ['search', 'calendar-columns'],
    queryFn: () => client.search('Schedule', { active: 'true', _include: 'Schedule:actor', _count: '200' }),
    staleTime: 5 * 60_000,
  });
  const visitTypes = useQuery({
    queryKey: ['search', 'visit-types'],
    queryFn: () => client.search('HealthcareService', { active: 'true', _count: '200' }),
    staleTime: 5 * 60_000,
  });
  const columns = useMemo(() => columnsOf(schedules.data), [schedules.data]);
  const types = useMemo(() => visitTypesOf(visitTypes.data), [visitTypes.data]);
  return {
    columns,
    visitTypes: types,
    isPending: schedules.isPending,
    error: schedules.error ?? visitTypes.error,
  };
}

/** Free Slots and Appointments for [from, to) of the given Schedules. */
export function useCalendarRange(scheduleIds: string[], from: Date, to: Date) {
  const client = useFhirClient();
  const range = [from.toISOString(), to.toISOString()] as const;
  const slots = useQuery({
    queryKey: ['search', 'calendar-slots', scheduleIds, ...range],
    enabled: scheduleIds.length > 0,
    queryFn: async () => {
      const query = new URLSearchParams([
        ['schedule', scheduleIds.map((id) => `Schedule/${id}`).join(',')],
        ['status', 'free'],
        ['start', `ge${range[0]}`],
        ['start', `lt${range[1]}`],
        ['_count', '1000'],
      ]);
      const bundles = await allPages<Slot>(client, `Slot?${query.toString()}`);
      return bundles.flatMap((b) => matches(b));
    },
  });
  const appointments = useQuery({
    queryKey: ['search', 'calendar-appointments', ...range],
    queryFn: async () => {
      const query = new URLSearchParams([
        ['date', `ge${range[0]}`],
        ['date', `lt${range[1]}`],
        ['status', SHOWN_STATUSES.join(',')],
        ['_include', 'Appointment:patient'],
        ['_count', PAGE],
      ]);
      const bundles = await allPages<Appointment>(client, `Appointment?${query.toString()}`);
      const patients = new Map<string, string>();
      for (const entry of bundles.flatMap((b) => b.entry ?? [])) {
        const r = entry.resource as (Resource & { name?: { given?: string[]; family?: string; text?: string }[] }) | undefined;
        if (r?.resourceType === 'Patient' && r.id) {
          const name = r.name?.[0];
          patients.set(`Patient/${r.id}`, name?.text ?? [...(name?.given ?? []), name?.family ?? ''].join(' ').trim());
        }
      }
      return { appointments: bundles.flatMap((b) => matches(b)) as Appointment[], patients };
    },
  });
  return { slots, appointments };
}
