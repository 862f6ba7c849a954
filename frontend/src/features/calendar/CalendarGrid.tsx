import { useMemo, useRef, useState, type KeyboardEvent, type PointerEvent } from 'react';
import { useTranslation } from 'react-i18next';
import {
  PALETTE,
  columnsOfAppointment,
  minutesBetween,
  patientOf,
  sameDay,
  visitCodeOf,
  type Appointment,
  type CalendarColumn,
  type Slot,
  type VisitType,
} from './model';

export const DAY_START_HOUR = 7;
export const DAY_END_HOUR = 19;
export const PX_PER_MINUTE = 1.2;
const SNAP_MINUTES = 5;
const HEIGHT = (DAY_END_HOUR - DAY_START_HOUR) * 60 * PX_PER_MINUTE;

export interface GridColumn {
  key: string;
  day: Date;
  column: CalendarColumn;
}

interface Props {
  days: Date[];
  columns: CalendarColumn[];
  slots: Slot[];
  appointments: Appointment[];
  patientNames: Map<string, string>;
  visitTypes: VisitType[];
  colourBy: 'practitioner' | 'visit-type';
  onBook: (column: CalendarColumn, start: Date) => void;
  onOpen: (appointment: Appointment) => void;
  onMove: (appointment: Appointment, start: Date, minutes: number, from: CalendarColumn, to: CalendarColumn) => void;
}

interface Drag {
  id: string;
  mode: 'move' | 'resize';
  x: number;
  y: number;
  fromKey: string;
  start: Date;
  minutes: number;
  moved: boolean;
}

function minutesIntoDay(date: Date): number {
  return (date.getHours() - DAY_START_HOUR) * 60 + date.getMinutes();
}

function atMinutes(day: Date, minutes: number): Date {
  const date = new Date(day);
  date.setHours(DAY_START_HOUR, 0, 0, 0);
  date.setMinutes(date.getMinutes() + minutes);
  return date;
}

function snap(minutes: number): number {
  return Math.round(minutes / SNAP_MINUTES) * SNAP_MINUTES;
}

/** Consecutive free Slots of one column merged into blocks: fewer elements, the same free time. */
function freeBlocks(slots: Slot[]): { start: Date; end: Date; slotMinutes: number }[] {
  const sorted = [...slots].sort((a, b) => a.start.localeCompare(b.start));
  const blocks: { start: Date; end: Date; slotMinutes: number }[] = [];
  for (const slot of sorted) {
    const start = new Date(slot.start);
    const end = new Date(slot.end);
    const last = blocks.at(-1);
    if (last && last.end.getTime() === start.getTime()) last.end = end;
    else blocks.push({ start, end, slotMinutes: minutesBetween(slot.start, slot.end) || 10 });
  }
  return blocks;
}

export function CalendarGrid(props: Props) {
  const { t, i18n } = useTranslation();
  const { days, columns, appointments, visitTypes, colourBy } = props;
  const dragRef = useRef<Drag | null>(null);
  // One formatter for every label: toLocaleTimeString builds a new one per call (slow in a week view).
  const timeFormat = useMemo(() => new Intl.DateTimeFormat(i18n.language, { hour: '2-digit', minute: '2-digit' }), [i18n.language]);
  const time = (date: Date) => timeFormat.format(date);
  const gridColumns: GridColumn[] = useMemo(
    () => days.flatMap((day, dayIndex) => columns.map((column) => ({ key: `${dayIndex}:${column.scheduleId}`, day, column }))),
    [days, columns],
  );
  const byKey = useMemo(() => new Map(gridColumns.map((c) => [c.key, c])), [gridColumns]);
  const dayIndexOf = (iso: string) => {
    const date = new Date(iso);
    return days.findIndex((day) => sameDay(day, date));
  };
  // Free blocks and appointments by grid column, worked out once per data change (not per column).
  const blocksByKey = useMemo(() => {
    const bySchedule = new Map<string, Slot[]>();
    for (const slot of props.slots) {
      const key = `${dayIndexOf(slot.start)}:${slot.schedule.reference?.replace('Schedule/', '') ?? ''}`;
      const list = bySchedule.get(key);
      if (list) list.push(slot);
      else bySchedule.set(key, [slot]);
    }
    return new Map([...bySchedule].map(([key, slots]) => [key, freeBlocks(slots)]));
  }, [props.slots, days]);
  const appointmentsByKey = useMemo(() => {
    const map = new Map<string, Appointment[]>();
    for (const appointment of appointments) {
      if (!appointment.start) continue;
      const dayIndex = dayIndexOf(appointment.start);
      for (const column of columnsOfAppointment(appointment, columns)) {
        const key = `${dayIndex}:${column.scheduleId}`;
        const list = map.get(key);
        if (list) list.push(appointment);
        else map.set(key, [appointment]);
      }
    }
    return map;
  }, [appointments, columns, days]);
  const colourOf = (appointment: Appointment, column: CalendarColumn) => {
    if (colourBy === 'practitioner') return PALETTE[column.colourIndex]!;
    const index = visitTypes.findIndex((v) => v.code === visitCodeOf(appointment));
    return index < 0 ? '#495057' : PALETTE[index % PALETTE.length]!;
  };
  const minWidth = days.length > 1 ? 64 : 140;

  const update = (next: Drag | null) => {
    dragRef.current = next;
  };
  const onPointerDown = (event: PointerEvent, appointment: Appointment, key: string, mode: Drag['mode']) => {
    if (event.button !== 0 || !appointment.start || !appointment.end) return;
    event.stopPropagation();
    event.preventDefault();
    // Listen on the window: the block moves between columns (re-rendered) while the pointer is down.
    const onMoveWindow = (e: globalThis.PointerEvent) => onPointerMove(e);
    const onUpWindow = () => {
      window.removeEventListener('pointermove', onMoveWindow);
      window.removeEventListener('pointerup', onUpWindow);
      finishRef.current(appointment);
    };
    window.addEventListener('pointermove', onMoveWindow);
    window.addEventListener('pointerup', onUpWindow);
    update({
      id: appointment.id as string,
      mode,
      x: event.clientX,
      y: event.clientY,
      fromKey: key,
      start: new Date(appointment.start),
      minutes: minutesBetween(appointment.start, appointment.end),
      moved: false,
    });
  };
  const preview = (event: { clientX: number; clientY: number }) => {
    const current = dragRef.current;
    if (!current) return null;
    const delta = snap((event.clientY - current.y) / PX_PER_MINUTE);
    const target = document.elementsFromPoint(event.clientX, event.clientY)
      .map((el) => (el as HTMLElement).closest?.('[data-column-key]') as HTMLElement | null)
      .find(Boolean);
    const toKey = current.mode === 'move' ? (target?.dataset.columnKey ?? current.fromKey) : current.fromKey;
    return { delta, toKey, moved: current.moved || Math.abs(event.clientY - current.y) > 3 || Math.abs(event.clientX - current.x) > 3 };
  };
  const [ghost, setGhost] = useState<{ id: string; key: string; start: Date; minutes: number } | null>(null);
  const ghostRef = useRef<typeof ghost>(null);
  const showGhost = (next: typeof ghost) => {
    ghostRef.current = next;
    setGhost(next);
  };
  const onPointerMove = (event: { clientX: number; clientY: number }) => {
    const current = dragRef.current;
    const p = preview(event);
    if (!current || !p) return;
    if (p.moved && !current.moved) update({ ...current, moved: true });
    const toColumn = byKey.get(p.toKey);
    const fromColumn = byKey.get(current.fromKey);
    if (!toColumn || !fromColumn) return;
    if (current.mode === 'move') {
      const dayShift = toColumn.day.getTime() - fromColumn.day.getTime();
      showGhost({ id: current.id, key: p.toKey, start: new Date(current.start.getTime() + dayShift + p.delta * 60_000), minutes: current.minutes });
    } else {
      showGhost({ id: current.id, key: current.fromKey, start: current.start, minutes: Math.max(SNAP_MINUTES, current.minutes + p.delta) });
    }
  };
  const onPointerUp = (appointment: Appointment) => {
    const current = dragRef.current;
    const shown = ghostRef.current;
    update(null);
    showGhost(null);
    if (!current) return;
    if (!current.moved || !shown) {
      props.onOpen(appointment);
      return;
    }
    const from = byKey.get(current.fromKey)?.column;
    const to = byKey.get(shown.key)?.column;
    if (from && to && (shown.start.getTime() !== current.start.getTime() || shown.minutes !== current.minutes || from !== to)) {
      props.onMove(appointment, shown.start, shown.minutes, from, to);
    }
  };
  const finishRef = useRef(onPointerUp);
  finishRef.current = onPointerUp;
  const onKeyDown = (event: KeyboardEvent, appointment: Appointment, column: CalendarColumn) => {
    if (!appointment.start || !appointment.end) return;
    const minutes = minutesBetween(appointment.start, appointment.end);
    const start = new Date(appointment.start);
    const step = event.shiftKey ? 60 : 15;
    if (event.key === 'ArrowUp' || event.key === 'ArrowDown') {
      event.preventDefault();
      const delta = event.key === 'ArrowUp' ? -step : step;
      if (event.altKey) props.onMove(appointment, start, Math.max(SNAP_MINUTES, minutes + delta), column, column);
      else props.onMove(appointment, new Date(start.getTime() + delta * 60_000), minutes, column, column);
    } else if (event.key === 'Enter' || event.key === ' ') {
      event.preventDefault();
      props.onOpen(appointment);
    }
  };

  const hours = Array.from({ length: DAY_END_HOUR - DAY_START_HOUR }, (_, i) => DAY_START_HOUR + i);
  return (
    <div className="calendar-scroll" data-testid="calendar-grid" tabIndex={0} role="region" aria-label={t('calendar.title')}>
      <div className="calendar" style={{ gridTemplateColumns: `56px repeat(${gridColumns.length}, minmax(${minWidth}px, 1fr))` }}>
        {days.length > 1 && (
          <>
            <div className="calendar-corner calendar-day-row" />
            {days.map((day) => (
              <div key={`d-${day.toISOString()}`} className="calendar-day calendar-day-row" style={{ gridColumn: `span ${columns.length}` }}>
                {day.toLocaleDateString(i18n.language, { weekday: 'short', day: 'numeric', month: 'short' })}
              </div>
            ))}
          </>
        )}
        <div className={`calendar-corner${days.length > 1 ? ' calendar-under-days' : ''}`} />
        {gridColumns.map(({ key, column }, index) => (
          <div
            key={`h-${key}`}
            className={`calendar-head${days.length > 1 ? ' calendar-under-days' : ''}`}
            data-testid="column-header"
            style={{ borderLeftWidth: index % columns.length === 0 ? 2 : 1 }}
          >
            <div className="calendar-who" title={column.label}>
              <span className="calendar-swatch" style={{ background: PALETTE[column.colourIndex] }} aria-hidden />
              {column.label}
            </div>
          </div>
        ))}
        <div className="calendar-times" style={{ height: HEIGHT }} aria-hidden>
          {hours.map((hour) => (
            <div key={hour} className="calendar-hour" style={{ top: (hour - DAY_START_HOUR) * 60 * PX_PER_MINUTE }}>
              {time(atMinutes(new Date(2000, 0, 1), (hour - DAY_START_HOUR) * 60))}
            </div>
          ))}
        </div>
        {gridColumns.map(({ key, column }, index) => (
          <div
            key={key}
            className="calendar-column"
            data-column-key={key}
            data-testid={`column-${column.scheduleId}-${key.split(":")[0]}`}
            style={{ height: HEIGHT, borderLeftWidth: index % columns.length === 0 ? 2 : 1, backgroundSize: `100% ${60 * PX_PER_MINUTE}px` }}
          >
            {(blocksByKey.get(key) ?? []).map((block) => {
              const top = minutesIntoDay(block.start) * PX_PER_MINUTE;
              const height = minutesBetween(block.start.toISOString(), block.end.toISOString()) * PX_PER_MINUTE;
              return (
                <button
                  type="button"
                  key={block.start.toISOString()}
                  className="calendar-free"
                  style={{ top, height }}
                  aria-label={t('calendar.freeSlot', { time: `${time(block.start)}–${time(block.end)}`, who: column.label })}
                  data-testid="free-slot"
                  onClick={(event) => {
                    // The slot under the pointer (keyboard: the first one).
                    const offset = event.detail === 0 ? 0 : event.clientY - (event.currentTarget.getBoundingClientRect().top);
                    const slotIndex = Math.floor(offset / PX_PER_MINUTE / block.slotMinutes);
                    props.onBook(column, new Date(block.start.getTime() + slotIndex * block.slotMinutes * 60_000));
                  }}
                >
                  {height >= 18 ? t('calendar.free') : ''}
                </button>
              );
            })}
            {[
              ...(appointmentsByKey.get(key) ?? []).filter((a) => !ghost || a.id !== ghost.id || ghost.key === key),
              ...(ghost && ghost.key === key && !(appointmentsByKey.get(key) ?? []).some((a) => a.id === ghost.id)
                ? appointments.filter((a) => a.id === ghost.id)
                : []),
            ].map((appointment) => {
                const moving = ghost !== null && ghost.id === appointment.id ? ghost : null;
                const isGhost = moving !== null;
                const start = moving ? moving.start : new Date(appointment.start as string);
                const minutes = moving ? moving.minutes : minutesBetween(appointment.start as string, appointment.end as string);
                const patient = patientOf(appointment);
                const name = (patient?.reference && props.patientNames.get(patient.reference)) || patient?.display || '';
                const visit = visitTypes.find((v) => v.code === visitCodeOf(appointment))?.name ?? '';
                const label = `${time(start)} ${name}${visit ? ` · ${visit}` : ''} · ${t(`calendar.statuses.${appointment.status}`)}`;
                return (
                  <div
                    key={appointment.id}
                    role="button"
                    tabIndex={0}
                    aria-label={label}
                    aria-describedby="calendar-drag-hint"
                    data-testid="appointment"
                    data-appointment-id={appointment.id}
                    className={`calendar-appointment status-${appointment.status}${isGhost ? ' dragging' : ''}`}
                    style={{ top: minutesIntoDay(start) * PX_PER_MINUTE, height: Math.max(minutes * PX_PER_MINUTE, 14), background: colourOf(appointment, column) }}
                    onPointerDown={(event) => onPointerDown(event, appointment, key, 'move')}
                    onKeyDown={(event) => onKeyDown(event, appointment, column)}
                  >
                    <span className="calendar-appointment-text">
                      {time(start)} {name}
                      {visit && minutes >= 20 ? <><br />{visit}</> : null}
                    </span>
                    <span
                      className="calendar-resize"
                      data-testid="resize-handle"
                      aria-hidden
                      onPointerDown={(event) => onPointerDown(event, appointment, key, 'resize')}
                    />
                  </div>
                );
              })}
          </div>
        ))}
      </div>
      <p id="calendar-drag-hint" className="calendar-hint">
        {t('calendar.dragHint')}
      </p>
    </div>
  );
}
