import { TenantryError } from './errors.js';

/**
 * `YYYY-MM-DD` naming a day that exists, in years 1 to 9999: `2030-02-30` parses in JavaScript
 * (as March 2nd) but names no day, and PostgreSQL has no year 0. Only the first ten characters
 * are read, so an ISO date-time can be passed whole.
 */
export function isCalendarDate(value: string): boolean {
  const day = value.slice(0, 10);
  if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) return false;
  const [year, month, date] = day.split('-').map(Number) as [number, number, number];
  const parsed = new Date(Date.UTC(year, month - 1, date));
  return (
    year >= 1 &&
    parsed.getUTCFullYear() === year &&
    parsed.getUTCMonth() === month - 1 &&
    parsed.getUTCDate() === date
  );
}

/**
 * An instant given as text (a time-range filter), in years 1 to 9999: what JavaScript parses
 * beyond them (`-200000-01-01T00:00:00Z`), PostgreSQL refuses.
 */
export function parseInstant(value: string, field: string): Date {
  const date = new Date(value);
  const year = date.getUTCFullYear();
  if (Number.isNaN(date.getTime()) || year < 1 || year > 9999) {
    throw new TenantryError(
      'validation_failed',
      `${field} must be an ISO 8601 date-time in years 1 to 9999`,
      {
        field,
      },
    );
  }
  return date;
}
