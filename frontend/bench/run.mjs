// Front-end performance figures (docs/performance.md), measured on the real stack in the machine's Chromium:
//   1. the initial JavaScript the browser must load (gzipped), and each screen's own chunk;
//   2. patient search: time from the last keystroke to the results on screen, with 100,000 patients;
//   3. calendar week view with 20 practitioners: full load (with its FHIR searches) and a full re-render.
// Usage: `npm run build && npm run bench` (PATIENTS=100000 and PRACTITIONERS=20 by default).
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { launchBrowser } from '../e2e/browser.mjs';
import { backendClient, practitionerWithSchedule, visitTypeResource } from '../e2e/fhir.mjs';
import { signInAs } from '../e2e/signin.mjs';
import { FRONTEND, startStack } from '../e2e/stack.mjs';

const PATIENTS = Number(process.env.PATIENTS ?? 100_000);
const PARTS = (process.env.BENCH ?? 'search,calendar').split(',');
const PRACTITIONERS = Number(process.env.PRACTITIONERS ?? 20);
const BATCH = 1000;
const dist = path.join(FRONTEND, 'dist');
const kb = (bytes) => `${(bytes / 1024).toFixed(1)} KB`;
const gz = (file) => gzipSync(readFileSync(path.join(dist, file))).length;

function bundleFigures() {
  const html = readFileSync(path.join(dist, 'index.html'), 'utf8');
  const initialJs = [...html.matchAll(/(?:src|href)="\/(assets\/[^"]+\.js)"/g)].map((m) => m[1]);
  const css = [...html.matchAll(/href="\/(assets\/[^"]+\.css)"/g)].map((m) => m[1]);
  const chunks = readdirSync(path.join(dist, 'assets')).filter((f) => f.endsWith('.js') && !initialJs.includes(`assets/${f}`));
  const initial = initialJs.reduce((sum, f) => sum + gz(f), 0);
  console.log(`initial JS (index.html's script + modulepreloads): ${initialJs.length} files, ${kb(initial)} gzipped`);
  for (const f of initialJs) console.log(`  ${f}: ${kb(gz(f))}`);
  console.log(`initial CSS: ${kb(css.reduce((s, f) => s + gz(f), 0))} gzipped`);
  const lazy = chunks.map((f) => [f, gz(`assets/${f}`)]).sort((a, b) => b[1] - a[1]);
  console.log(`lazy chunks (loaded per screen): ${lazy.length}, largest ${lazy.slice(0, 4).map(([f, s]) => `${f} ${kb(s)}`).join(', ')}`);
  return initial;
}

const GIVEN = ['James', 'Mary', 'Wei', 'Fatima', 'José', 'Zoë', 'Chloé', 'Noah', 'Aiko', 'Olga', 'Liam', 'Mei', 'Ahmed', 'Sofía', 'Lukas', 'Anaïs', 'Ravi', 'Ingrid', 'Tomás', 'Yuki'];
const FAMILY = ['Smith', 'Chen', 'García', 'Müller', 'Nguyen', 'Kowalski', 'Okafor', 'Rossi', 'Tanaka', 'Dubois', 'Ivanova', 'Haddad', 'Silva', 'Johansson', 'Patel', 'Kim', 'Novák', 'Ó Briain', 'Schmidt', 'Lefèvre'];

function patient(i) {
  const family = `${FAMILY[i % FAMILY.length]}${i % 997 === 0 ? '' : String.fromCharCode(97 + (i % 23))}${Math.floor(i / 460)}`;
  const month = String((i % 12) + 1).padStart(2, '0');
  const day = String((i % 28) + 1).padStart(2, '0');
  return {
    resourceType: 'Patient',
    identifier: [{ system: 'https://pms.example.org/fhir/mrn', value: `MRN-${100000 + i}` }],
    name: [{ use: 'official', family, given: [GIVEN[(i * 7) % GIVEN.length]] }],
    gender: i % 2 ? 'female' : 'male',
    birthDate: `${1940 + (i % 70)}-${month}-${day}`,
    telecom: [{ system: 'phone', value: `+1 555 ${String(1000000 + i).slice(1)}` }],
  };
}

async function seedPatients(fhir, total) {
  const started = Date.now();
  for (let offset = 0; offset < total; offset += BATCH) {
    const entry = Array.from({ length: Math.min(BATCH, total - offset) }, (_, k) => ({
      resource: patient(offset + k),
      request: { method: 'POST', url: 'Patient' },
    }));
    await fhir.post('', { resourceType: 'Bundle', type: 'batch', entry }, 'return=minimal');
    if ((offset / BATCH) % 10 === 9) console.log(`  ${offset + BATCH} patients (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  }
  console.log(`seeded ${total} patients in ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

const percentile = (values, p) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor((p / 100) * values.length))];

async function searchLatency(page, baseUrl) {
  await page.goto(`${baseUrl}/patients`);
  const box = page.getByTestId('patient-search');
  await box.waitFor();
  // Instrument the page: time of the last input event, and of the first frame that shows its results.
  await page.evaluate(() => {
    const input = document.querySelector('[data-testid="patient-search"]');
    input.addEventListener('input', () => {
      window.__lastInput = performance.now();
      window.__shown = null;
    });
  });
  const terms = ['chen', 'garc', 'zoe', 'mull', 'lefev', 'ngu', 'smitha1', 'tanakab', 'MRN-150000', 'MRN-123456', '1975-03-04', '+1 555 012345', 'kim', 'silva', 'jose gar', 'patel', 'novak', 'dubo', 'rossi', 'okaf'];
  const times = [];
  for (const term of terms) {
    await box.fill('');
    await page.waitForTimeout(300);
    await box.pressSequentially(term, { delay: 40 });
    const ms = await page.evaluate(
      (typed) =>
        new Promise((resolve) => {
          const check = () => {
            // Only the results of exactly this text count (older ones stay on screen while it loads).
            const shown = [...document.querySelectorAll('[data-results-for]')].some((el) => el.getAttribute('data-results-for') === typed);
            if (shown) requestAnimationFrame(() => resolve(performance.now() - window.__lastInput));
            else setTimeout(check, 2);
          };
          check();
        }),
      term,
    );
    const count = await page.locator('[role="option"]').count();
    console.log(`  "${term}": ${ms.toFixed(0)} ms after the last keystroke, ${count} shown`);
    times.push(ms);
  }
  return times;
}

async function seedCalendar(fhir, day) {
  const visit = await fhir.create(visitTypeResource('follow-up', 'Follow-up', 20));
  const schedules = [];
  for (let i = 0; i < PRACTITIONERS; i += 1) {
    schedules.push(await practitionerWithSchedule(fhir, { given: GIVEN[i % GIVEN.length], family: `${FAMILY[i % FAMILY.length]}-${i}`, visitType: visit }));
  }
  // 8 appointments a day for each practitioner on Monday-Friday of the week of `day`.
  const monday = new Date(`${day}T00:00:00Z`);
  monday.setUTCDate(monday.getUTCDate() - ((monday.getUTCDay() + 6) % 7));
  const entry = [];
  let n = 0;
  for (const { practitioner } of schedules) {
    for (let d = 0; d < 5; d += 1) {
      for (let k = 0; k < 8; k += 1) {
        const start = new Date(monday.getTime() + d * 86_400_000 + (8 * 60 + k * 60) * 60_000);
        entry.push({
          resource: {
            resourceType: 'Appointment',
            status: 'booked',
            start: start.toISOString(),
            end: new Date(start.getTime() + 20 * 60_000).toISOString(),
            serviceType: [{ coding: [visit.type[0].coding[0]] }],
            participant: [
              { actor: { reference: `Patient/bench-${(n += 1)}` }, status: 'accepted' },
              { actor: { reference: `Practitioner/${practitioner.id}` }, status: 'accepted' },
            ],
          },
          request: { method: 'POST', url: 'Appointment' },
        });
      }
    }
  }
  return { appointments: entry.length, entry };
}

async function main() {
  console.log('== bundle');
  const initial = bundleFigures();
  console.log(`\n== stack (PATIENTS=${PATIENTS}, PRACTITIONERS=${PRACTITIONERS})`);
  const stack = await startStack({ users: [{ username: 'bench-admin', role: 'admin' }], env: { PMS_SLOT_HORIZON_DAYS: '14', WEB_CONCURRENCY: '2' } });
  const browser = await launchBrowser();
  try {
    const fhir = await backendClient(stack);
    await seedPatients(fhir, PATIENTS);
    // Searched right after a bulk load, PostgreSQL has no statistics for the new rows yet (the first
    // searches took 0.5-1.3 s) and no visibility map; autovacuum does both within a minute or so in a
    // running clinic (stack.mjs).
    stack.analyze();
    const page = await browser.context.newPage();
    page.setDefaultTimeout(60_000);
    await signInAs(page, stack.baseUrl, 'bench-admin', {});
    console.log('\n== patient search (debounce 150 ms included)');
    const times = PARTS.includes('search') ? await searchLatency(page, stack.baseUrl) : [0];
    console.log(`search: median ${percentile(times, 50).toFixed(0)} ms, p95 ${percentile(times, 95).toFixed(0)} ms, max ${Math.max(...times).toFixed(0)} ms over ${times.length} searches`);

    if (!PARTS.includes('calendar')) return;
    console.log(`\n== calendar week, ${PRACTITIONERS} practitioners`);
    const day = new Date(Date.now() + 7 * 86_400_000).toISOString().slice(0, 10);
    const { appointments, entry } = await seedCalendar(fhir, day);
    // Appointments need real patients: give each one of the seeded patients (one booking each).
    const ids = (await fhir.search(`Patient?_count=${appointments}&_elements=id`)).entry.map((e) => e.resource.id);
    entry.forEach((e, i) => (e.resource.participant[0].actor.reference = `Patient/${ids[i]}`));
    for (let i = 0; i < entry.length; i += 200) await fhir.post('', { resourceType: 'Bundle', type: 'transaction', entry: entry.slice(i, i + 200) }, 'return=minimal');
    // The Slots and Appointments just written, as autovacuum would see them a minute later (without
    // statistics PostgreSQL expected one row from each index and re-read the week's Slots 2,261 times
    // per page: 3.3 s a page, 10.7 s to show the week).
    stack.analyze();
    const loads = [];
    const renders = [];
    const afterDataTimes = [];
    for (let run = 0; run < 5; run += 1) {
      const started = Date.now();
      await page.goto(`${stack.baseUrl}/calendar?view=week&date=${day}`);
      await page.waitForFunction((expected) => document.querySelectorAll('[data-testid="appointment"]').length >= expected, appointments, { polling: 'raf' });
      const [load, afterData] = await page.evaluate(() => {
        // Rendering alone: from the last FHIR response's arrival to this frame with every appointment.
        const now = performance.now();
        const fhir = performance.getEntriesByType('resource').filter((e) => e.name.includes('/fhir/'));
        return [now, now - Math.max(...fhir.map((e) => e.responseEnd))];
      });
      loads.push(load);
      afterDataTimes.push(afterData);
      const render = await page.evaluate(async () => {
        const toggle = [...document.querySelectorAll('label')].find((l) => /Visit type|就诊类型/.test(l.textContent) && l.closest('.mantine-SegmentedControl-root'));
        const t0 = performance.now();
        toggle.click();
        await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
        return performance.now() - t0;
      });
      renders.push(render);
      console.log(`  run ${run + 1}: navigation to ${appointments} appointments on screen ${load.toFixed(0)} ms (wall ${Date.now() - started} ms), of which rendering after the last FHIR response ${afterData.toFixed(0)} ms; full re-render (colour toggle) ${render.toFixed(0)} ms`);
    }
    const columns = await page.getByTestId('column-header').count();
    console.log(`calendar week: ${columns} columns, ${appointments} appointments; load median ${percentile(loads, 50).toFixed(0)} ms, render after data median ${percentile(afterDataTimes, 50).toFixed(0)} ms, re-render median ${percentile(renders, 50).toFixed(0)} ms`);
    console.log(`\nSUMMARY initial-js-gzip=${kb(initial)} search-median=${percentile(times, 50).toFixed(0)}ms search-p95=${percentile(times, 95).toFixed(0)}ms calendar-load-median=${percentile(loads, 50).toFixed(0)}ms calendar-render-after-data-median=${percentile(afterDataTimes, 50).toFixed(0)}ms calendar-rerender-median=${percentile(renders, 50).toFixed(0)}ms`);
  } finally {
    await browser.close();
    await stack.stop();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
