// The pages over the metrics API: overview, breakdown, provider scorecard, reiteration audit.
// Each figure is drawn with `metric()`: `data-metric` is its path in the API's document (the
// nearest `data-source` names the document), so the browser test compares it with the API.
import { t, has } from './i18n.js';
import * as api from './api.js';
import { h, metric } from './dom.js';
import { fmt } from './format.js';
import * as charts from './charts.js';

const KINDS = ['entry', 'progression', 'reiteration', 'regression'];
const DISTRIBUTION = ['0', '1', '2', '3+'];
const STATS = ['count', 'mean', 'median', 'p90'];

const capitalise = (text) => text.charAt(0).toUpperCase() + text.slice(1);
const sum = (object) => Object.values(object || {}).reduce((a, b) => a + (b || 0), 0);

/** The label of a stage: the dictionary's for the page's language, else the catalogue's. */
function stageLabel(context, code) {
  if (code === null || code === undefined) return t('matrix.entry');
  if (code === 'waiting') return t('active.waiting');
  if (has(`stage.${code}`)) return t(`stage.${code}`);
  return context.stages.find((s) => s.code === code)?.label ?? code;
}

function territoryName(context, code) {
  if (!code) return t('filters.all');
  return context.names.get(code) ?? code;
}

/** A readable problem: its title, detail and the field at fault; `role=alert`. */
export function problemBox(error) {
  const problem = error?.problem ?? {};
  if (error?.status === 0) {
    return h('div', { class: 'problem', role: 'alert' }, h('p', { class: 'problem-title' }, t('problem.network')));
  }
  return h('div', { class: 'problem', role: 'alert', 'data-problem': problem.code ?? '' },
    h('p', { class: 'problem-title' }, problem.title || t('problem.title')),
    problem.detail ? h('p', { class: 'problem-detail' }, problem.detail) : null,
    problem.field ? h('p', { class: 'problem-field' }, t('problem.field', { field: problem.field })) : null,
    h('p', { class: 'problem-code' }, `HTTP ${error?.status ?? problem.status ?? ''}${problem.code ? ` · ${problem.code}` : ''}`));
}

function panel(title, attrs, ...children) {
  const { class: extra, ...rest } = attrs;
  const id = `panel-${Math.random().toString(36).slice(2, 9)}`;
  return h('section', { ...rest, class: `panel ${extra ?? ''}`.trim(), 'aria-labelledby': id },
    h('h2', { id }, title), ...children);
}

/** The line under the title: territory, period, as known at. */
function queryLine(context, query, echo) {
  return h('p', { class: 'query-line' },
    h('span', {}, t('query.period', {
      territory: territoryName(context, query.territory),
      from: fmt.date(echo?.from ?? query.from),
      to: fmt.date(echo?.to ?? query.to),
    })),
    h('span', { class: 'asof' }, t('query.asof', { known_at: fmt.instant(echo?.known_at) })));
}

/** A chart with its data table in a disclosure below it; `caption: false` when the panel's
 * title already says what it is. */
function chartBlock(label, table, drawer, { tall = false, caption = true, rows = 0 } = {}) {
  const canvas = charts.canvas(label);
  const box = h('div', { class: `chart-box${tall ? ' tall' : ''}` }, canvas);
  // A horizontal bar chart of many rows grows with them (CSSOM, allowed by the CSP).
  if (rows > 8) box.style.height = `${Math.min(1400, 80 + rows * 26)}px`;
  const block = h('figure', { class: 'chart-block' },
    caption ? h('figcaption', { class: 'chart-caption' }, label) : null,
    box,
    table ? h('details', { class: 'data-table' }, h('summary', {}, t('data.table')), table) : null);
  return { block, draw: () => drawer(canvas) };
}

function table(caption, head, rows, attrs = {}) {
  return h('div', { class: 'table-wrap' }, h('table', attrs,
    caption ? h('caption', {}, caption) : null,
    h('thead', {}, h('tr', {}, head.map((c, i) => h('th', { scope: 'col', class: i ? 'num' : null }, c)))),
    h('tbody', {}, rows)));
}

// ---------------------------------------------------------------------------------- overview

export async function overview(body, query, context, signal) {
  const params = { territory: query.territory, from: query.from, to: query.to, known_at: query.known_at };
  const [metrics, series] = await Promise.allSettled([
    api.get('/v1/metrics', params, { signal }),
    api.get('/v1/metrics/series', { ...params, interval: 'month' }, { signal }),
  ]);
  if (metrics.status === 'rejected') throw metrics.reason;
  if (series.status === 'rejected' && (series.reason.name === 'AbortError' || series.reason.status === 401)) throw series.reason;
  const m = metrics.value;
  const draws = [];
  const to = fmt.date(m.query.to);

  const kpi = (label, note, element, cls = '') => h('div', { class: `kpi ${cls}` },
    h('p', { class: 'kpi-label' }, label), h('p', { class: 'kpi-value' }, element), h('p', { class: 'kpi-note' }, note));
  const headline = h('div', { class: 'kpis', 'data-source': 'metrics' },
    kpi(t('kpi.enrolments'), t('kpi.enrolments.note'), metric('enrolments', m.enrolments, fmt.int)),
    kpi(t('kpi.active'), t('kpi.active.note', { to }), metric('active_at_end.*', sum(m.active_at_end), fmt.int)),
    kpi(t('kpi.progressivity'), t('kpi.progressivity.note'), metric('progressivity_index', m.progressivity_index, fmt.dec),
      m.progressivity_index === null ? '' : m.progressivity_index >= 0 ? 'good' : 'bad'),
    kpi(t('kpi.flagged'), t('kpi.flagged.note', { threshold: m.reiteration.threshold }), metric('reiteration.flagged', m.reiteration.flagged, fmt.int),
      m.reiteration.flagged > 0 ? 'warn' : ''));
  const minor = (label, element) => h('div', { class: 'mini' }, h('span', { class: 'mini-label' }, label), element);
  const secondary = h('div', { class: 'minis', 'data-source': 'metrics' },
    minor(t('kpi.reopenings'), metric('reopenings', m.reopenings, fmt.int)),
    minor(t('kpi.closures'), metric('closures.*', sum(m.closures), fmt.int)),
    minor(t('kpi.corrections'), metric('corrections', m.corrections, fmt.int)),
    minor(t('kpi.assessments'), metric('assessments.multidisciplinary', m.assessments.multidisciplinary, fmt.int)));

  // Monthly series.
  let seriesPanel;
  if (series.status === 'fulfilled') {
    const points = series.value.points;
    const labels = points.map((p) => fmt.month(p.from));
    const rows = points.map((p, i) => h('tr', {},
      h('th', { scope: 'row' }, labels[i]),
      h('td', { class: 'num' }, metric(`points.${i}.metrics.enrolments`, p.metrics.enrolments, fmt.int)),
      KINDS.map((k) => h('td', { class: 'num' }, metric(`points.${i}.metrics.transitions.${k}`, p.metrics.transitions[k], fmt.int))),
      h('td', { class: 'num' }, metric(`points.${i}.metrics.progressivity_index`, p.metrics.progressivity_index, fmt.dec)),
      h('td', { class: 'num' }, metric(`points.${i}.metrics.reiteration.flagged`, p.metrics.reiteration.flagged, fmt.int))));
    const head = [t('series.month'), t('metric.enrolments'), ...KINDS.map((k) => t(`transition.${k}`)), t('metric.progressivity_index'), t('metric.flagged')];
    const flow = chartBlock(t('series.flow'), table(null, head, rows, { 'data-source': 'series' }), (canvas) => charts.draw(canvas, {
      type: 'bar',
      data: {
        labels,
        datasets: [
          { type: 'line', label: t('metric.enrolments'), data: points.map((p) => p.metrics.enrolments), borderColor: charts.COLOURS.primary, backgroundColor: charts.COLOURS.primary, tension: 0, pointRadius: 3, order: 0 },
          ...KINDS.map((k) => ({ label: t(`transition.${k}`), data: points.map((p) => p.metrics.transitions[k]), backgroundColor: charts.COLOURS[k], stack: 'moves', order: 1, maxBarThickness: 36 })),
        ],
      },
      options: {
        scales: { x: { stacked: true, grid: { display: false } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 }, grid: { color: '#eef1f4' } } },
        plugins: { legend: { position: 'bottom' } },
      },
    }), { tall: true });
    const index = chartBlock(t('series.index'), table(null, [t('series.month'), t('metric.progressivity_index')],
      points.map((p, i) => h('tr', {}, h('th', { scope: 'row' }, labels[i]), h('td', { class: 'num' }, fmt.dec(p.metrics.progressivity_index))))),
    (canvas) => charts.lines(canvas, labels, [{ label: t('metric.progressivity_index'), data: points.map((p) => p.metrics.progressivity_index), colour: charts.COLOURS.progression }], { min: -1, max: 1 }), { tall: true });
    draws.push(flow.draw, index.draw);
    seriesPanel = panel(t('series.title'), { class: 'wide', id: 'series' }, h('div', { class: 'two' }, flow.block, index.block));
  } else {
    seriesPanel = panel(t('series.title'), { class: 'wide', id: 'series' }, problemBox(series.reason));
  }

  // Transition matrix as a heat table.
  const stages = context.stages.map((s) => s.code);
  const froms = [null, ...stages];
  const cell = (from, to) => m.transition_matrix.find((c) => (c.from ?? null) === from && c.to === to)?.count ?? 0;
  const max = Math.max(1, ...m.transition_matrix.map((c) => c.count));
  const kindOf = (from, to) => {
    if (from === null) return 'entry';
    const level = (code) => context.stages.find((s) => s.code === code)?.level ?? 0;
    return level(to) > level(from) ? 'progression' : level(to) < level(from) ? 'regression' : 'reiteration';
  };
  const matrix = h('div', { class: 'table-wrap' }, h('table', { class: 'heat', 'data-source': 'metrics' },
    h('caption', {}, t('matrix.caption')),
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, `${t('matrix.from')} \\ ${t('matrix.to')}`), h('span', { 'aria-hidden': 'true' }, `${t('matrix.from')} ↓ · ${t('matrix.to')} →`)),
      stages.map((s) => h('th', { scope: 'col', class: 'num' }, stageLabel(context, s))),
      h('th', { scope: 'col', class: 'num' }, t('matrix.total')))),
    h('tbody', {}, froms.map((from) => h('tr', {},
      h('th', { scope: 'row' }, from === null ? t('transition.entry') : stageLabel(context, from)),
      stages.map((to) => {
        const count = cell(from, to);
        const strength = count === 0 ? 0 : 0.12 + 0.88 * (count / max);
        return h('td', { class: `num heat-cell kind-${kindOf(from, to)} level-${Math.min(5, Math.ceil(strength * 5))}`, title: t(`transition.${kindOf(from, to)}`) },
          metric(`transition_matrix.${from ?? 'entry'}>${to}`, count, fmt.int));
      }),
      h('td', { class: 'num total' }, fmt.int(stages.reduce((a, to) => a + cell(from, to), 0))))))));
  const legend = h('ul', { class: 'legend' }, KINDS.map((k) => h('li', {}, h('span', { class: `swatch kind-${k}`, 'aria-hidden': 'true' }), t(`transition.${k}`))));
  const matrixPanel = panel(t('matrix.title'), { id: 'matrix' }, matrix, legend);

  // Moves by kind.
  const moves = chartBlock(t('transitions.title'),
    table(null, [t('matrix.to'), t('active.count')], KINDS.map((k) => h('tr', {}, h('th', { scope: 'row' }, t(`transition.${k}`)),
      h('td', { class: 'num' }, metric(`transitions.${k}`, m.transitions[k], fmt.int)))), { 'data-source': 'metrics' }),
    (canvas) => charts.draw(canvas, {
      type: 'bar',
      data: { labels: KINDS.map((k) => t(`transition.${k}`)), datasets: [{ label: t('transitions.title'), data: KINDS.map((k) => m.transitions[k]), backgroundColor: KINDS.map((k) => charts.COLOURS[k]), borderRadius: 3, maxBarThickness: 48 }] },
      options: { indexAxis: 'y', plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true, ticks: { precision: 0 } }, y: { grid: { display: false } } } },
    }), { caption: false });
  draws.push(moves.draw);
  const movesPanel = panel(t('transitions.title'), { id: 'moves' }, moves.block);

  // Reiteration distribution.
  const dist = m.reiteration.distribution;
  const reiteration = chartBlock(t('reiteration.caption', { to }),
    table(null, [t('reiteration.count'), t('reiteration.people')], DISTRIBUTION.map((k) => h('tr', {}, h('th', { scope: 'row' }, k),
      h('td', { class: 'num' }, metric(`reiteration.distribution.${k}`, dist[k], fmt.int)))), { 'data-source': 'metrics' }),
    (canvas) => charts.bars(canvas, DISTRIBUTION, [{ label: t('reiteration.people'), data: DISTRIBUTION.map((k) => dist[k]), colour: ['#0b5394', '#b35c00', '#a34a00', '#c0262d'] }]));
  draws.push(reiteration.draw);
  const reiterationPanel = panel(t('reiteration.title'), { id: 'reiteration' }, reiteration.block);

  // Active by stage.
  const activeKeys = Object.keys(m.active_at_end);
  const active = chartBlock(t('active.title', { to }),
    table(null, [t('active.stage'), t('active.count')], activeKeys.map((k) => h('tr', {}, h('th', { scope: 'row' }, stageLabel(context, k)),
      h('td', { class: 'num' }, metric(`active_at_end.${k}`, m.active_at_end[k], fmt.int)))), { 'data-source': 'metrics' }),
    (canvas) => charts.doughnut(canvas, activeKeys.map((k) => stageLabel(context, k)), activeKeys.map((k) => m.active_at_end[k])), { caption: false });
  draws.push(active.draw);
  const activePanel = panel(t('active.title', { to }), { id: 'active' }, active.block);

  // Time in stage and in pathway.
  const statRows = (prefix, label, durations) => ['closed', 'open'].map((state) => h('tr', {},
    h('th', { scope: 'row' }, label ? `${label} · ${t(`stats.${state}`)}` : t(`stats.${state}`)),
    STATS.map((s) => h('td', { class: 'num' }, metric(`${prefix}.${state}.${s}`, durations[state][s], s === 'count' ? fmt.int : fmt.days)))));
  const statHead = [t('stats.group'), ...STATS.map((s) => t(`stats.${s}`))];
  const stageKeys = Object.keys(m.time_in_stage_days);
  const stageLabels = stageKeys.map((k) => stageLabel(context, k));
  const durationChart = (state) => {
    const canvas = charts.canvas(`${t('stage_time.title')} · ${t(`stats.${state}`)}`);
    draws.push(() => charts.bars(canvas, stageLabels, [
      { label: t('stats.median'), data: stageKeys.map((k) => m.time_in_stage_days[k][state].median), colour: charts.COLOURS.primary },
      { label: t('stats.p90'), data: stageKeys.map((k) => m.time_in_stage_days[k][state].p90), colour: '#7fa7d0' },
    ]));
    return h('figure', { class: 'chart-block' },
      h('figcaption', { class: 'chart-caption' }, `${capitalise(t(`stats.${state}`))}: ${t('stats.median').toLowerCase()}, ${t('stats.p90')}`),
      h('div', { class: 'chart-box' }, canvas));
  };
  const stagePanel = panel(t('stage_time.title'), { class: 'wide', id: 'stage-time' },
    h('div', { class: 'two even' }, durationChart('closed'), durationChart('open')),
    table(null, statHead, stageKeys.map((k) => statRows(`time_in_stage_days.${k}`, stageLabel(context, k), m.time_in_stage_days[k])), { 'data-source': 'metrics' }));
  const pathwayPanel = panel(t('pathway_time.title'), { class: 'wide', id: 'pathway-time' },
    table(null, statHead, statRows('time_in_pathway_days', '', m.time_in_pathway_days), { 'data-source': 'metrics' }));

  body.replaceChildren(
    queryLine(context, query, m.query),
    headline, secondary,
    h('div', { class: 'grid' }, seriesPanel, matrixPanel, movesPanel, reiterationPanel, activePanel, stagePanel, pathwayPanel));
  draws.forEach((draw) => draw());
}

// ----------------------------------------------------------------------- sortable tables

/**
 * A table whose column headers sort it (buttons: click, Enter or Space), `aria-sort` on the
 * sorted one. `columns`: `{label, value(row), cell(row)}`; the first column is the row header.
 */
function sortableTable(caption, columns, rows, attrs = {}) {
  let sortBy = 1;
  let descending = true;
  const tbody = h('tbody');
  const headers = columns.map((column, i) => {
    const button = h('button', { type: 'button', class: 'sort', 'data-sort': column.key, title: t('sort.hint', { column: column.label }) },
      column.label, h('span', { class: 'sort-mark', 'aria-hidden': 'true' }));
    button.addEventListener('click', () => {
      if (sortBy === i) descending = !descending;
      else { sortBy = i; descending = i !== 0; }
      fill();
    });
    return h('th', { scope: 'col', class: i ? 'num' : null }, button);
  });
  const fill = () => {
    const column = columns[sortBy];
    const sorted = [...rows].sort((a, b) => {
      const x = column.value(a);
      const y = column.value(b);
      const order = x === null || x === undefined ? 1 : y === null || y === undefined ? -1
        : typeof x === 'string' ? x.localeCompare(y) : x - y;
      return descending && x !== null && y !== null && x !== undefined && y !== undefined ? -order : order;
    });
    headers.forEach((th, i) => {
      if (i === sortBy) th.setAttribute('aria-sort', descending ? 'descending' : 'ascending');
      else th.removeAttribute('aria-sort');
      th.querySelector('.sort-mark').textContent = i === sortBy ? (descending ? ' ▼' : ' ▲') : '';
    });
    tbody.replaceChildren(...sorted.map((row) => h('tr', { 'data-row': columns[0].value(row) }, columns.map((c, i) =>
      h(i ? 'td' : 'th', { class: i ? 'num' : null, scope: i ? null : 'row' }, c.cell(row))))));
  };
  fill();
  return h('div', { class: 'table-wrap' }, h('table', { class: 'sortable', ...attrs },
    h('caption', {}, caption), h('thead', {}, h('tr', {}, headers)), tbody));
}

// --------------------------------------------------------------------------------- breakdown

export async function breakdown(body, query, context, signal) {
  const params = { territory: query.territory, from: query.from, to: query.to, known_at: query.known_at };
  const result = await api.get('/v1/metrics/breakdown', params, { signal });
  const children = result.children;
  if (children.length === 0) {
    body.replaceChildren(queryLine(context, query), h('p', { class: 'notice' }, t('breakdown.none')));
    return;
  }
  const base = (c) => `children.${c.territory}.metrics`;
  const num = (key, label, value, format = fmt.int, path = key) => ({
    key, label, value: (c) => value(c.metrics), cell: (c) => metric(`${base(c)}.${path}`, value(c.metrics), format),
  });
  const columns = [
    { key: 'territory', label: t('breakdown.territory'), value: (c) => c.territory,
      cell: (c) => h('span', { class: 'place' }, h('span', {}, territoryName(context, c.territory)), h('span', { class: 'code' }, c.territory)) },
    num('enrolments', t('metric.enrolments'), (m) => m.enrolments),
    num('active', t('metric.active'), (m) => sum(m.active_at_end), fmt.int, 'active_at_end.*'),
    ...KINDS.slice(1).map((k) => num(k, t(`transition.${k}`), (m) => m.transitions[k], fmt.int, `transitions.${k}`)),
    num('progressivity_index', t('metric.progressivity_index'), (m) => m.progressivity_index, fmt.dec),
    num('flagged', t('metric.flagged'), (m) => m.reiteration.flagged, fmt.int, 'reiteration.flagged'),
    num('corrections', t('metric.corrections'), (m) => m.corrections),
  ];
  const labels = children.map((c) => territoryName(context, c.territory));
  // The sortable table above is this chart's data table.
  const chart = chartBlock(t('breakdown.chart'), null,
    (canvas) => charts.bars(canvas, labels, [
      { label: t('metric.enrolments'), data: children.map((c) => c.metrics.enrolments), colour: charts.COLOURS.primary },
      { label: t('metric.active'), data: children.map((c) => sum(c.metrics.active_at_end)), colour: '#7fa7d0' },
      { label: t('metric.flagged'), data: children.map((c) => c.metrics.reiteration.flagged), colour: charts.COLOURS.regression },
    ], { horizontal: children.length > 6 }), { tall: children.length > 6, caption: false, rows: children.length > 6 ? children.length : 0 });
  body.replaceChildren(
    queryLine(context, query, children[0]?.metrics.query),
    panel(t('breakdown.title'), { class: 'wide', id: 'breakdown-table' },
      sortableTable(t('breakdown.caption', { territory: territoryName(context, result.territory) }), columns, children, { 'data-source': 'breakdown', id: 'breakdown' })),
    panel(t('breakdown.chart'), { class: 'wide', id: 'breakdown-chart' }, chart.block));
  chart.draw();
}

// --------------------------------------------------------------------------------- providers

export async function providers(body, query, context, signal) {
  const params = { territory: query.territory, from: query.from, to: query.to, known_at: query.known_at };
  const result = await api.get('/v1/providers/scorecard', params, { signal });
  const items = result.providers;
  if (items.length === 0) {
    body.replaceChildren(queryLine(context, query, result.query), h('p', { class: 'notice' }, t('providers.none')));
    return;
  }
  const base = (p) => `providers.${p.provider}`;
  const num = (key, label, value, format = fmt.int, path = key) => ({
    key, label, value, cell: (p) => metric(`${base(p)}.${path}`, value(p), format),
  });
  const columns = [
    { key: 'provider', label: t('providers.provider'), value: (p) => p.provider,
      cell: (p) => (context.providers.has(p.provider)
        ? h('span', { class: 'place' }, h('span', {}, context.providers.get(p.provider)), h('span', { class: 'code' }, p.provider))
        : h('span', { class: 'code-only' }, p.provider)) },
    num('episodes', t('providers.episodes'), (p) => p.episodes),
    ...KINDS.map((k) => num(k, t(`transition.${k}`), (p) => p.transitions[k], fmt.int, `transitions.${k}`)),
    num('reiteration_rate', t('providers.reiteration_rate'), (p) => p.reiteration_rate, fmt.pct),
    num('exits', t('providers.exits'), (p) => sum(p.exits), fmt.int, 'exits.*'),
    num('median_days', t('providers.median_days'), (p) => p.time_in_stage_days.median, fmt.days, 'time_in_stage_days.median'),
    num('placements', t('providers.placements'), (p) => p.placements_within_180_days, fmt.int, 'placements_within_180_days'),
    num('placement_rate', t('providers.placement_rate'), (p) => p.placement_rate, fmt.pct),
    num('improved', t('providers.improved'), (p) => p.occupability_change.improved, fmt.int, 'occupability_change.improved'),
    num('worsened', t('providers.worsened'), (p) => p.occupability_change.worsened, fmt.int, 'occupability_change.worsened'),
  ];
  const labels = items.map((p) => context.providers.get(p.provider) ?? p.provider);
  const chart = chartBlock(t('transitions.title'), null,
    (canvas) => charts.bars(canvas, labels, KINDS.map((k) => ({ label: t(`transition.${k}`), data: items.map((p) => p.transitions[k]), colour: charts.COLOURS[k] })),
      { stacked: true, horizontal: true }), { tall: items.length > 5, caption: false, rows: items.length });
  body.replaceChildren(
    queryLine(context, query, result.query),
    panel(t('providers.title'), { class: 'wide', id: 'scorecard-table' },
      sortableTable(t('providers.caption'), columns, items, { 'data-source': 'scorecard', id: 'scorecard' })),
    panel(t('transitions.title'), { class: 'wide', id: 'scorecard-chart' }, chart.block));
  chart.draw();
}

// ------------------------------------------------------------------------------------- audit

export async function audit(body, query, context, signal) {
  const params = { territory: query.territory, to: query.to, known_at: query.known_at };
  const result = await api.get('/v1/audit/reiterations', params, { signal });
  const list = result.beneficiaries;
  const to = fmt.date(result.query.to);
  const header = h('div', { class: 'kpis', 'data-source': 'audit' },
    h('div', { class: `kpi ${list.length ? 'warn' : ''}` }, h('p', { class: 'kpi-label' }, t('audit.count')),
      h('p', { class: 'kpi-value' }, metric('beneficiaries.#', list.length, fmt.int)),
      h('p', { class: 'kpi-note' }, t('kpi.flagged.note', { threshold: result.threshold }))));
  const rows = list.map((b) => {
    const base = `beneficiaries.${b.beneficiary_id}`;
    const evidence = h('details', { class: 'evidence' },
      h('summary', {}, t('audit.show', { count: b.transitions.length })),
      h('ol', { class: 'moves' }, b.transitions.map((tr, i) => h('li', {},
        metric(`${base}.transitions.${i}.on`, tr.on, fmt.date, 'span', { class: 'move-date' }),
        ' ',
        metric(`${base}.transitions.${i}.stage`, tr.stage, (s) => stageLabel(context, s), 'span', { class: 'move-stage' }),
        ' ',
        h('span', { class: `tag kind-${tr.classification}` }, metric(`${base}.transitions.${i}.classification`, tr.classification, (c) => t(`transition.${c}`))),
        tr.provider ? h('span', { class: 'move-provider' }, ` ${t('audit.provider')}: ${context.providers.get(tr.provider) ?? tr.provider}`) : null))));
    return h('tr', { 'data-beneficiary': b.beneficiary_id },
      h('th', { scope: 'row' }, h('code', { class: 'pseudo' }, b.beneficiary_id)),
      h('td', {}, h('span', { class: 'place' }, h('span', {}, territoryName(context, b.territory)), h('span', { class: 'code' }, b.territory))),
      h('td', { class: 'num' }, metric(`${base}.stalled_reiterations`, b.stalled_reiterations, fmt.int)),
      h('td', { class: 'num' }, metric(`${base}.total_reiterations`, b.total_reiterations, fmt.int)),
      h('td', {}, b.current_stage ? stageLabel(context, b.current_stage) : t('none')),
      h('td', {}, b.occupability ? t(`occupability.${b.occupability}`) : t('none')),
      h('td', {}, evidence));
  });
  const head = [t('audit.id'), t('audit.territory'), t('audit.stalled'), t('audit.total'), t('audit.stage'), t('audit.occupability'), t('audit.evidence')];
  body.replaceChildren(
    h('p', { class: 'query-line' }, h('span', {}, `${territoryName(context, query.territory)} · ${to}`),
      h('span', { class: 'asof' }, t('query.asof', { known_at: fmt.instant(result.query.known_at) }))),
    header,
    panel(t('audit.title'), { class: 'wide', id: 'audit-list' },
      list.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'audit', 'data-source': 'audit' },
        h('caption', {}, t('audit.caption', { threshold: result.threshold, to })),
        h('thead', {}, h('tr', {}, head.map((c, i) => h('th', { scope: 'col', class: i === 2 || i === 3 ? 'num' : null }, c)))),
        h('tbody', {}, rows)))
        : h('p', { class: 'notice' }, t('audit.none'))));
}
