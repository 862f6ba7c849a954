import { useEffect, useRef, useState } from 'react';

const ACTIVITY_EVENTS = ['pointerdown', 'keydown', 'wheel', 'touchstart'] as const;

export interface IdleState {
  /** Milliseconds left before automatic sign-out, once the warning is showing; null otherwise. */
  remainingMs: number | null;
  stayActive: () => void;
}

/**
 * Watches the user's activity: after `timeoutMs - warningMs` without any, the warning shows a count-down;
 * at `timeoutMs` `onTimeout` runs (automatic sign-out, as the server ends its idle sessions too).
 */
export function useIdleTimeout(timeoutMs: number, warningMs: number, onTimeout: () => void, enabled = true): IdleState {
  const lastActivity = useRef(Date.now());
  const [remainingMs, setRemainingMs] = useState<number | null>(null);
  const timedOut = useRef(onTimeout);
  timedOut.current = onTimeout;

  useEffect(() => {
    if (!enabled) return undefined;
    lastActivity.current = Date.now();
    const touch = () => {
      // Activity counts only while no warning shows: then the user must answer it.
      if (Date.now() - lastActivity.current < timeoutMs - warningMs) lastActivity.current = Date.now();
    };
    for (const name of ACTIVITY_EVENTS) window.addEventListener(name, touch, { passive: true });
    const timer = window.setInterval(() => {
      const left = timeoutMs - (Date.now() - lastActivity.current);
      if (left <= 0) {
        window.clearInterval(timer);
        setRemainingMs(null);
        timedOut.current();
      } else {
        setRemainingMs(left <= warningMs ? left : null);
      }
    }, 1000);
    return () => {
      window.clearInterval(timer);
      for (const name of ACTIVITY_EVENTS) window.removeEventListener(name, touch);
    };
  }, [enabled, timeoutMs, warningMs]);

  return {
    remainingMs,
    stayActive: () => {
      lastActivity.current = Date.now();
      setRemainingMs(null);
    },
  };
}
