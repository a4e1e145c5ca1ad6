// Numbers and dates in the page's language; "—" for what the API says is null.
import { locale, t } from './i18n.js';

const integer = new Intl.NumberFormat(locale, { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat(locale, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const days = new Intl.NumberFormat(locale, { minimumFractionDigits: 0, maximumFractionDigits: 1 });
const percent = new Intl.NumberFormat(locale, { style: 'percent', maximumFractionDigits: 1 });
const dateFormat = new Intl.DateTimeFormat(locale, { day: 'numeric', month: 'short', year: 'numeric', timeZone: 'UTC' });
const monthFormat = new Intl.DateTimeFormat(locale, { month: 'short', year: 'numeric', timeZone: 'UTC' });
const instantFormat = new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'short', timeZone: 'UTC' });

const missing = (v) => v === null || v === undefined || Number.isNaN(v);

export const fmt = {
  int: (v) => (missing(v) ? t('none') : integer.format(v)),
  dec: (v) => (missing(v) ? t('none') : decimal.format(v)),
  days: (v) => (missing(v) ? t('none') : days.format(v)),
  pct: (v) => (missing(v) ? t('none') : percent.format(v)),
  date: (v) => (v ? dateFormat.format(new Date(`${v}T00:00:00Z`)) : t('none')),
  month: (v) => monthFormat.format(new Date(`${v}T00:00:00Z`)),
  instant: (v) => (v ? `${instantFormat.format(new Date(v))} UTC` : t('none')),
};

/** Today's date, `YYYY-MM-DD` (UTC, like the API's defaults). */
export function today() {
  return new Date().toISOString().slice(0, 10);
}
