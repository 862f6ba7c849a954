import { fireEvent, screen } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import { renderWithApp } from '../../test/render';
import { CalendarGrid } from './CalendarGrid';
import type { Appointment, CalendarColumn, Slot } from './model';

const day = new Date(2026, 11, 1); // local midnight
const at = (hours: number, minutes = 0) => new Date(2026, 11, 1, hours, minutes).toISOString();
const column: CalendarColumn = {
  scheduleId: 's1',
  label: 'Ada Lee',
  kind: 'practitioner',
  actorRefs: ['PractitionerRole/r1', 'Practitioner/p1'],
  bookingActors: [{ reference: 'PractitionerRole/r1' }, { reference: 'Practitioner/p1' }],
  colourIndex: 0,
};
const slot = (h: number, m: number): Slot => ({ resourceType: 'Slot', id: `${h}${m}`, schedule: { reference: 'Schedule/s1' }, status: 'free', start: at(h, m), end: at(h, m + 10) });
const appointment: Appointment = {
  resourceType: 'Appointment',
  id: 'a1',
  status: 'booked',
  start: at(10),
  end: at(10, 20),
  participant: [{ actor: { reference: 'Patient/x' } }, { actor: { reference: 'Practitioner/p1' } }],
};

function setup() {
  const handlers = { onBook: vi.fn(), onOpen: vi.fn(), onMove: vi.fn() };
  renderWithApp(
    <CalendarGrid
      days={[day]}
      columns={[column]}
      slots={[slot(9, 0), slot(9, 10), slot(9, 20), slot(11, 0)]}
      appointments={[appointment]}
      patientNames={new Map([['Patient/x', 'Mei Chen']])}
      visitTypes={[]}
      colourBy="practitioner"
      {...handlers}
    />,
  );
  return handlers;
}

describe('CalendarGrid', () => {
  it('shows consecutive free slots as one bookable period, and books its first slot from the keyboard', () => {
    const { onBook } = setup();
    const free = screen.getAllByRole('button', { name: /Free slot .* with Ada Lee: book/ });
    expect(free).toHaveLength(2); // 09:00-09:30 and 11:00-11:10
    fireEvent.click(free[0]!, { detail: 0 }); // a keyboard "click"
    expect(onBook).toHaveBeenCalledWith(column, new Date(at(9)));
  });

  it('labels an appointment with time, patient and status, opens it with Enter and moves it with the arrow keys', () => {
    const { onOpen, onMove } = setup();
    const block = screen.getByRole('button', { name: /Mei Chen · Booked/ });
    fireEvent.keyDown(block, { key: 'Enter' });
    expect(onOpen).toHaveBeenCalledWith(appointment);
    fireEvent.keyDown(block, { key: 'ArrowDown' });
    expect(onMove).toHaveBeenLastCalledWith(appointment, new Date(at(10, 15)), 20, column, column);
    fireEvent.keyDown(block, { key: 'ArrowUp', altKey: true });
    expect(onMove).toHaveBeenLastCalledWith(appointment, new Date(at(10)), 5, column, column);
  });
});
