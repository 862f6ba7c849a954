import { describe, expect, it } from 'vitest';
import { asBirthDate, patientQueries } from './patientSearch';

const params = (query: string) => new URLSearchParams(query);

describe('patientQueries', () => {
  it('asks nothing for less than two characters', () => {
    expect(patientQueries('')).toEqual([]);
    expect(patientQueries(' a ')).toEqual([]);
  });

  it('searches a date of birth in either common form', () => {
    expect(asBirthDate('03/02/1980')).toBe('1980-02-03');
    const [only, ...rest] = patientQueries('1980-02-03');
    expect(rest).toEqual([]);
    expect(params(only!).get('birthdate')).toBe('1980-02-03');
  });

  it('searches every word of a name (each must match some part of the name) and the identifier', () => {
    const queries = patientQueries('  chen   wei ').map(params);
    expect(queries).toHaveLength(1);
    expect(queries[0]!.getAll('name')).toEqual(['chen', 'wei']);
    const single = patientQueries('MRN-1001').map(params);
    expect(single.map((q) => q.get('identifier') ?? q.getAll('name').join())).toEqual(['MRN-1001', 'MRN-1001']);
  });

  it('searches a phone number and an identifier for digits', () => {
    const queries = patientQueries('5550101').map(params);
    expect(queries.map((q) => [...q.keys()][0])).toEqual(['phone', 'identifier']);
    expect(queries.every((q) => q.get('_count') === '20')).toBe(true);
  });
});
