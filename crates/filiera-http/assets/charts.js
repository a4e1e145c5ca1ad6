// Charts over the vendored Chart.js (assets/vendor, see VENDORED.md). Every chart is drawn
// beside a data table that says the same thing, for screen readers and for copying.
import { locale } from './i18n.js';

/** Colours with at least 3:1 contrast against white, distinguishable with colour blindness
 * (Okabe–Ito based), one per transition kind and a sequence for other series. */
export const COLOURS = {
  entry: '#5b6b7a',
  progression: '#1a7f37',
  reiteration: '#b35c00',
  regression: '#c0262d',
  primary: '#0b5394',
  series: ['#0b5394', '#b35c00', '#1a7f37', '#7a3e9d', '#c0262d', '#0f766e', '#5b6b7a'],
};

const live = new Set();

/** Destroys every chart of the previous page. */
export function destroyAll() {
  for (const chart of live) chart.destroy();
  live.clear();
}

function defaults() {
  const Chart = window.Chart;
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.font.size = 13;
  Chart.defaults.color = '#3d4852';
  Chart.defaults.borderColor = '#e3e8ee';
  Chart.defaults.locale = locale;
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.plugins.legend.labels.boxWidth = 14;
}

/** A canvas for a chart, described by `label` (the table beside it has the figures). */
export function canvas(label) {
  const element = document.createElement('canvas');
  element.setAttribute('role', 'img');
  element.setAttribute('aria-label', label);
  return element;
}

/** Draws `config` into `element` once it is in the document. */
export function draw(element, config) {
  if (!window.Chart) return null;
  defaults();
  const chart = new window.Chart(element, config);
  live.add(chart);
  return chart;
}

/** A bar chart of `datasets` (`{label, data, colour}`) over `labels`. */
export function bars(element, labels, datasets, { stacked = false, horizontal = false, percent = false } = {}) {
  const valueAxis = {
    stacked,
    beginAtZero: true,
    ticks: { precision: percent ? undefined : 0 },
    grid: { color: '#eef1f4' },
  };
  const categoryAxis = { stacked, grid: { display: false } };
  return draw(element, {
    type: 'bar',
    data: {
      labels,
      datasets: datasets.map((d) => ({
        label: d.label,
        data: d.data,
        backgroundColor: d.colour,
        borderRadius: 3,
        maxBarThickness: 42,
      })),
    },
    options: {
      indexAxis: horizontal ? 'y' : 'x',
      scales: horizontal ? { x: valueAxis, y: categoryAxis } : { x: categoryAxis, y: valueAxis },
      plugins: { legend: { display: datasets.length > 1, position: 'bottom' } },
    },
  });
}

/** A line chart of `datasets` over `labels`; `null` values leave a gap. */
export function lines(element, labels, datasets, { min, max } = {}) {
  return draw(element, {
    type: 'line',
    data: {
      labels,
      datasets: datasets.map((d) => ({
        label: d.label,
        data: d.data,
        borderColor: d.colour,
        backgroundColor: d.colour,
        pointRadius: 3,
        tension: 0,
        spanGaps: false,
      })),
    },
    options: {
      scales: { y: { min, max, grid: { color: '#eef1f4' } }, x: { grid: { display: false } } },
      plugins: { legend: { display: datasets.length > 1, position: 'bottom' } },
    },
  });
}

/** A doughnut of `values` over `labels`. */
export function doughnut(element, labels, values) {
  return draw(element, {
    type: 'doughnut',
    data: {
      labels,
      datasets: [{ data: values, backgroundColor: COLOURS.series, borderWidth: 1 }],
    },
    options: { cutout: '58%', plugins: { legend: { position: 'right' } } },
  });
}
