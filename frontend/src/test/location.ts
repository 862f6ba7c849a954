// jsdom's window.location cannot be spied on: tests put a stand-in in its place that records where the app
// sends the browser, and put the real one back afterwards.
const realLocation = window.location;

/** Replace window.location with a stand-in at https://pms.example (plus `extra`); the URLs assigned. */
export function stubLocation(extra: Record<string, unknown> = {}): string[] {
  const assigned: string[] = [];
  Object.defineProperty(window, 'location', {
    configurable: true,
    value: { origin: 'https://pms.example', ...extra, assign: (url: string) => assigned.push(url) },
  });
  return assigned;
}

export function restoreLocation(): void {
  Object.defineProperty(window, 'location', { configurable: true, value: realLocation });
}
