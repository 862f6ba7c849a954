// A backend client of the real server (client credentials, `system/*.*`), registered with the `pms`
// command, for setting up the clinic (practitioners, visit types, schedules) and checking results.
import { randomBytes } from 'node:crypto';
import { pms } from './stack.mjs';

export async function backendClient(stack) {
  const secret = randomBytes(18).toString('hex');
  const out = pms(['client', 'create', '--name', 'e2e setup', '--grant', 'client_credentials', '--scopes', 'system/*.*', '--secret-stdin', '--database-url', stack.databaseUrl], {
    input: `${secret}\n`,
  });
  const clientId = /client_id:\s*(\S+)/.exec(out)?.[1];
  if (!clientId) throw new Error(`no client_id in: ${out}`);
  // Backend tokens are short-lived (minutes): a long setup (the bench seeds 100,000 patients) gets a new
  // one when the server says the old one expired.
  const requestToken = () =>
    fetch(`${stack.baseUrl}/oauth2/token`, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/x-www-form-urlencoded',
        Authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}`,
      },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'system/*.*' }),
    });
  const newToken = async () => {
    // A kept-alive connection that the server closed as idle (its keep-alive timeout is 5 s; `pms client
    // create` can take longer on a busy machine) fails as "other side closed": a token request is safe to
    // send again on a new connection.
    const response = await requestToken().catch((error) => {
      if (error?.cause?.code !== 'UND_ERR_SOCKET') throw error;
      return requestToken();
    });
    const issued = (await response.json()).access_token;
    if (!issued) throw new Error('no backend token');
    return issued;
  };
  let token = await newToken();
  const send = (method, path, body, prefer) =>
    fetch(`${stack.baseUrl}/fhir/${path}`, {
      method,
      headers: {
        Authorization: `Bearer ${token}`,
        'Content-Type': 'application/fhir+json',
        Accept: 'application/fhir+json',
        ...(prefer ? { Prefer: prefer } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  const call = async (method, path, body, prefer) => {
    let r = await send(method, path, body, prefer);
    if (r.status === 401) {
      token = await newToken();
      r = await send(method, path, body, prefer);
    }
    const json = await r.json().catch(() => null);
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
    return json;
  };
  return {
    create: (resource) => call('POST', resource.resourceType, resource),
    read: (type, id) => call('GET', `${type}/${id}`),
    search: (query) => call('GET', query),
    post: (path, body, prefer) => call('POST', path, body, prefer),
  };
}

const EXT = 'https://pms.example.org/fhir';
const ALL_DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

/** A practitioner who works 08:00-18:00 every day and offers `visitType`, with a Schedule. */
export async function practitionerWithSchedule(fhir, { given, family, visitType }) {
  const practitioner = await fhir.create({ resourceType: 'Practitioner', name: [{ given: [given], family, prefix: ['Dr'] }] });
  const role = await fhir.create({
    resourceType: 'PractitionerRole',
    active: true,
    practitioner: { reference: `Practitioner/${practitioner.id}` },
    availableTime: [{ daysOfWeek: ALL_DAYS, availableStartTime: '08:00:00', availableEndTime: '18:00:00' }],
    healthcareService: [{ reference: `HealthcareService/${visitType.id}` }],
  });
  const schedule = await fhir.create({
    resourceType: 'Schedule',
    active: true,
    actor: [{ reference: `PractitionerRole/${role.id}` }, { reference: `Practitioner/${practitioner.id}` }],
    extension: [{ url: `${EXT}/StructureDefinition/slot-minutes`, valuePositiveInt: 10 }],
  });
  return { practitioner, role, schedule };
}

export function visitTypeResource(code, name, minutes) {
  return {
    resourceType: 'HealthcareService',
    active: true,
    name,
    type: [{ coding: [{ system: `${EXT}/CodeSystem/visit-type`, code, display: name }] }],
    extension: [{ url: `${EXT}/StructureDefinition/visit-duration`, valueDuration: { value: minutes, unit: 'min', system: 'http://unitsofmeasure.org', code: 'min' } }],
  };
}
