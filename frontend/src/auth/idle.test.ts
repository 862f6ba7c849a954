import { act, renderHook } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { useIdleTimeout } from './idle';

describe('useIdleTimeout', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('warns before the timeout, then signs out', () => {
    const onTimeout = vi.fn();
    const { result } = renderHook(() => useIdleTimeout(10_000, 4_000, onTimeout));
    act(() => vi.advanceTimersByTime(5_000));
    expect(result.current.remainingMs).toBeNull();
    act(() => vi.advanceTimersByTime(2_000));
    expect(result.current.remainingMs).toBeGreaterThan(0);
    act(() => vi.advanceTimersByTime(4_000));
    expect(onTimeout).toHaveBeenCalledOnce();
  });

  it('activity before the warning, or answering it, starts the wait again', () => {
    const onTimeout = vi.fn();
    const { result } = renderHook(() => useIdleTimeout(10_000, 4_000, onTimeout));
    act(() => vi.advanceTimersByTime(5_000));
    act(() => void window.dispatchEvent(new KeyboardEvent('keydown')));
    act(() => vi.advanceTimersByTime(8_000));
    expect(result.current.remainingMs).not.toBeNull();
    act(() => result.current.stayActive());
    act(() => vi.advanceTimersByTime(5_000));
    expect(onTimeout).not.toHaveBeenCalled();
  });
});
