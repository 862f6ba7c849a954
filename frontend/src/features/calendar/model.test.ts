import { describe, expect, it } from 'vitest';
import type { Bundle } from '../../fhir/types';
import { columnsOf, newAppointment, rescheduled, viewDays, visitTypesOf, weeklySeries, type Appointment } from './model';

const schedules: Bundle = {
  resourceType: 'Bundle',
  type: 'searchset',
  entry: [
    { resource: { resourceType: 'Schedule', id: 's2', actor: [{ reference: 'Location/room1' }] } as never, search: { mode: 'match' } },
    { resource: { resourceType: 'Schedule', id: 's1', actor: [{ reference: 'PractitionerRole/r1' }, { reference: 'Practitioner/p1' }] } as never, search: { mode: 'match' } },
    { resource: { resourceType: 'Practitioner', id: 'p1', name: [{ given: ['Ada'], family: 'Lee' }] } as never, search: { mode: 'include' } },
    { resource: { resourceType: 'Location', id: 'room1', name: 'Room 1' } as never, search: { mode: 'include' } },
  ],
};

describe('calendar model', () => {
  const columns = columnsOf(schedules);

  it('makes a column per Schedule, practitioners before rooms, labelled by the included actor', () => {
    expect(columns.map((c) => [c.label, c.kind])).toEqual([
      ['Ada Lee', 'practitioner'],
      ['Room 1', 'room'],
    ]);
    expect(columns[0]!.bookingActors.map((a) => a.reference)).toEqual(['PractitionerRole/r1', 'Practitioner/p1']);
  });

  it('books the patient with the column’s actors for the visit type’s length', () => {
    const visit = visitTypesOf({
      resourceType: 'Bundle',
      type: 'searchset',
      entry: [{ resource: { resourceType: 'HealthcareService', id: 'h', name: 'Check-up', type: [{ coding: [{ system: 'https://pms.example.org/fhir/CodeSystem/visit-type', code: 'check-up' }] }], extension: [{ url: 'https://pms.example.org/fhir/StructureDefinition/visit-duration', valueDuration: { value: 40 } }] } as never }],
    })[0];
    expect(visit?.minutes).toBe(40);
    const appointment = newAppointment({ patient: { reference: 'Patient/x' }, column: columns[0]!, start: '2026-12-01T09:00:00.000Z', visitType: visit, minutes: 40, comment: ' hi ' });
    expect(appointment).toMatchObject({ status: 'booked', end: '2026-12-01T09:40:00.000Z', comment: 'hi' });
    expect(appointment.participant?.map((p) => p.actor?.reference)).toEqual(['Patient/x', 'PractitionerRole/r1', 'Practitioner/p1']);
  });

  it('reschedules to another column by swapping that column’s actors and keeping the patient', () => {
    const booked: Appointment = { resourceType: 'Appointment', id: 'a', status: 'booked', start: '2026-12-01T09:00:00Z', end: '2026-12-01T09:20:00Z', minutesDuration: 20, participant: [{ actor: { reference: 'Patient/x' } }, { actor: { reference: 'PractitionerRole/r1' } }, { actor: { reference: 'Practitioner/p1' } }] };
    const moved = rescheduled(booked, '2026-12-01T10:00:00.000Z', 30, columns[0], columns[1]);
    expect(moved.end).toBe('2026-12-01T10:30:00.000Z');
    expect(moved.participant?.map((p) => p.actor?.reference)).toEqual(['Patient/x', 'Location/room1']);
    expect(moved.minutesDuration).toBeUndefined(); // the server derives it
  });

  it('asks $book for a weekly series, so the server keeps the local time across DST', () => {
    const first = newAppointment({ patient: { reference: 'Patient/x' }, column: columns[0]!, start: '2026-12-01T09:00:00.000Z', visitType: undefined, minutes: 20, comment: '' });
    const request = weeklySeries(first, 3);
    expect(request.resourceType).toBe('Parameters');
    expect(request.parameter).toEqual([
      { name: 'appointment', resource: first },
      { name: 'recurrence', valueString: 'FREQ=WEEKLY;COUNT=3' },
    ]);
  });

  it('shows Monday to Sunday in the week view', () => {
    const days = viewDays(new Date(2026, 10, 26), 'week'); // a Thursday
    expect(days.map((d) => d.getDate())).toEqual([23, 24, 25, 26, 27, 28, 29]);
    expect(viewDays(new Date(2026, 10, 26, 15), 'day').map((d) => d.getHours())).toEqual([0]);
  });
});
