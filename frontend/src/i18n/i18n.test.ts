import { describe, expect, it } from 'vitest';
import en from './en.json';
import zhCN from './zh-CN.json';

function keys(value: unknown, prefix = ''): string[] {
  if (typeof value !== 'object' || value === null) return [prefix];
  return Object.entries(value).flatMap(([key, inner]) => keys(inner, prefix ? `${prefix}.${key}` : key));
}

describe('translations', () => {
  it('Simplified Chinese has every English string, and nothing else', () => {
    expect(keys(zhCN).sort()).toEqual(keys(en).sort());
  });
  it('no Chinese string is left in English', () => {
    const english = new Map(keys(en).map((key) => [key, key.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], en)]));
    const untranslated = keys(zhCN).filter((key) => {
      const zh = key.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], zhCN);
      return zh === english.get(key) && /[a-z]{3,}/i.test(String(zh));
    });
    expect(untranslated).toEqual([]);
  });
});
