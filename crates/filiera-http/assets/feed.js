// The live feed: `GET /v1/events/stream` as server-sent events. `EventSource` cannot send an
// `Authorization` header, so the token goes as `?access_token=` (accepted on this route only).
// A first `GET /v1/events` with the header checks the token and the territory, so that a
// refusal is shown as its problem document (an `EventSource` error carries no body).
import { t } from './i18n.js';
import * as api from './api.js';
import { h, announce } from './dom.js';
import { fmt } from './format.js';
import { problemBox } from './pages.js';

/** Rows kept on screen; older ones are dropped. */
const KEEP = 200;

let source = null;

export function stopFeed() {
  if (source) {
    source.close();
    source = null;
  }
}

function summary(item) {
  const d = item.data || {};
  const parts = [];
  for (const key of ['stage', 'from_stage', 'transition', 'outcome', 'referral', 'kind', 'occupability', 'provider', 'reason']) {
    if (d[key] !== undefined && d[key] !== null && typeof d[key] !== 'object') parts.push(`${key}: ${d[key]}`);
  }
  return parts.join(' · ');
}

export async function feed(body, query, context, signal) {
  const choices = context.pickable;
  const scope = context.claims.territories || [];
  const select = h('select', { id: 'feed-territory', name: 'territory' },
    scope.length === 0 ? h('option', { value: '' }, t('filters.all')) : null,
    choices.map((c) => h('option', { value: c.code, selected: c.code === query.territory },
      `${'\u00a0\u00a0\u00a0'.repeat(c.depth)}${c.name === c.code ? c.code : `${c.name} (${c.code})`}`)));
  const button = h('button', { type: 'submit', class: 'btn btn-primary', id: 'feed-toggle' }, t('feed.start'));
  const status = h('p', { class: 'feed-status', id: 'feed-status', role: 'status' }, t('feed.status.idle'));
  const problems = h('div', {});
  const tbody = h('tbody', { id: 'feed-rows' });
  const table = h('div', { class: 'table-wrap' }, h('table', { class: 'feed' },
    h('caption', {}, t('feed.showing', { count: KEEP })),
    h('thead', {}, h('tr', {}, [t('feed.position'), t('feed.recorded_at'), t('feed.type'), t('feed.territory'), t('feed.beneficiary'), t('feed.on'), t('feed.detail')]
      .map((c, i) => h('th', { scope: 'col', class: i === 0 ? 'num' : null }, c)))),
    tbody));
  const form = h('form', { class: 'filters', id: 'feed-form', 'aria-label': t('filters.label') },
    h('div', { class: 'field field-territory' }, h('label', { for: 'feed-territory' }, t('filters.territory')), select),
    h('div', { class: 'field field-submit' }, button));
  let received = 0;

  const add = (item) => {
    received += 1;
    const row = h('tr', { 'data-position': item.position, 'data-beneficiary': item.beneficiary_id, class: 'fresh' },
      h('td', { class: 'num' }, String(item.position)),
      h('td', {}, fmt.instant(item.recorded_at)),
      h('td', {}, h('span', { class: 'tag' }, item.type)),
      h('td', {}, item.territory ? (context.names.get(item.territory) ?? item.territory) : t('none')),
      h('td', {}, h('code', { class: 'pseudo' }, item.beneficiary_id)),
      h('td', {}, fmt.date(item.data?.on)),
      h('td', { class: 'detail' }, summary(item)));
    tbody.prepend(row);
    while (tbody.childElementCount > KEEP) tbody.lastElementChild.remove();
    window.setTimeout(() => row.classList.remove('fresh'), 1500);
    status.textContent = t('feed.status.live', { count: fmt.int(received) });
  };

  const follow = async () => {
    stopFeed();
    problems.replaceChildren();
    tbody.replaceChildren();
    received = 0;
    status.textContent = t('feed.status.connecting');
    const territory = select.value;
    let after;
    try {
      // The last KEEP positions of the feed, then live: a large feed is not replayed.
      const page = await api.get('/v1/events', { limit: 1 }, { signal });
      after = Math.max(0, page.head - KEEP);
    } catch (error) {
      if (error.name === 'AbortError') return;
      if (error.status === 401) throw error;
      problems.replaceChildren(problemBox(error));
      status.textContent = t('feed.status.idle');
      return;
    }
    const url = api.url('/v1/events/stream', { territory, after, access_token: api.token() });
    source = new EventSource(url);
    source.addEventListener('open', () => {
      status.textContent = t('feed.status.live', { count: fmt.int(received) });
      button.textContent = t('feed.stop');
      announce(t('feed.status.live', { count: fmt.int(received) }));
    });
    source.addEventListener('message', (event) => {
      try {
        add(JSON.parse(event.data));
      } catch {
        // A malformed item is skipped; the next one still shows.
      }
    });
    source.addEventListener('error', async () => {
      if (!source) return;
      status.textContent = t('feed.status.retrying');
      // The browser retries by itself; find out whether the refusal is final.
      try {
        await api.get('/v1/events', { limit: 1 });
      } catch (error) {
        if (error.status === 401 || error.status === 403) {
          stopFeed();
          problems.replaceChildren(problemBox(error));
          button.textContent = t('feed.start');
        }
      }
    });
  };

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (source) {
      stopFeed();
      status.textContent = t('feed.status.idle');
      button.textContent = t('feed.start');
    } else {
      follow().catch((error) => problems.replaceChildren(problemBox(error)));
    }
  });
  signal.addEventListener('abort', stopFeed);

  body.replaceChildren(h('p', { class: 'query-line' }, t('feed.intro')), form, status, problems,
    h('section', { class: 'panel wide', 'aria-labelledby': 'feed-title' }, h('h2', { id: 'feed-title' }, t('feed.title')), table));
  await follow();
}
