// The dashboard: sign-in, the frame (header, navigation, filters) and the hash router.
// Pages are in pages.js (figures) and feed.js (live events); every figure comes from the API.
import { t, lang, LANGUAGES } from './i18n.js';
import * as api from './api.js';
import { h, announce } from './dom.js';
import { destroyAll } from './charts.js';
import { fmt, today } from './format.js';
import { overview, breakdown, providers, audit, problemBox } from './pages.js';
import { feed, stopFeed } from './feed.js';

const READERS = ['operator', 'evaluator', 'administrator'];
const SUBSCRIBERS = ['subscriber', 'administrator'];
const PERIOD = ['territory', 'from', 'to', 'known_at'];

/** The pages: hash route, who may open them, the filters they take, how to draw them. */
const ROUTES = [
  { id: 'overview', roles: READERS, filters: PERIOD, render: overview },
  { id: 'breakdown', roles: READERS, filters: PERIOD, render: breakdown },
  { id: 'providers', roles: READERS, filters: PERIOD, render: providers },
  { id: 'audit', roles: READERS, filters: ['territory', 'to', 'known_at'], render: audit },
  { id: 'feed', roles: SUBSCRIBERS, filters: [], render: feed },
];

/** What every page may use: the token's claims, the territory tree and the stage catalogue. */
const context = {
  claims: null,
  territories: [], // flattened tree: {code, name, depth, hasChildren}
  names: new Map(),
  stages: [],
  providers: new Map(),
};

let controller = null;

function main() {
  document.documentElement.lang = lang;
  document.title = `filiera · ${t('app.subtitle')}`;
  document.getElementById('skip-link').textContent = t('skip');
  document.getElementById('brand-sub').textContent = t('app.subtitle');
  drawLanguages();
  const signOut = document.getElementById('sign-out');
  signOut.textContent = t('signout');
  signOut.addEventListener('click', () => {
    api.signOut();
    showSignIn();
  });
  window.addEventListener('hashchange', () => route());
  start();
}

function drawLanguages() {
  const nav = document.getElementById('lang-switch');
  nav.setAttribute('aria-label', t('lang.label'));
  nav.replaceChildren(
    ...LANGUAGES.map(([code, name]) => {
      const href = `?lang=${code}${window.location.hash}`;
      return h('a', { href, lang: code, hreflang: code, 'aria-current': code === lang ? 'true' : null }, name);
    }),
  );
  // Keep the route when switching language.
  window.addEventListener('hashchange', () => {
    for (const link of nav.querySelectorAll('a')) {
      link.setAttribute('href', `?lang=${link.getAttribute('lang')}${window.location.hash}`);
    }
  });
}

async function start(message) {
  const token = api.token();
  const claims = api.claims(token);
  if (!token || !claims) return showSignIn(message);
  if (typeof claims.exp === 'number' && claims.exp * 1000 < Date.now()) {
    api.signOut();
    return showSignIn(t('signin.expired'));
  }
  context.claims = claims;
  try {
    await loadRegistries();
  } catch (error) {
    if (error.status === 401) {
      api.signOut();
      return showSignIn(error.problem?.detail || t('signin.ended'));
    }
    // Other failures are shown by the page itself.
  }
  drawFrame();
  route();
}

async function loadRegistries() {
  if (READERS.includes(context.claims.role)) {
    const [tree, stages, registry] = await Promise.all([
      api.get('/v1/territories'),
      api.get('/v1/stages'),
      api.get('/v1/providers').catch(() => ({ providers: [] })),
    ]);
    context.territories = [];
    const walk = (node, depth) => {
      context.territories.push({ code: node.code, name: node.name, depth, hasChildren: node.children.length > 0 });
      context.names.set(node.code, node.name);
      node.children.forEach((child) => walk(child, depth + 1));
    };
    tree.territories.forEach((root) => walk(root, 0));
    context.stages = stages.stages;
    context.providers = new Map(registry.providers.map((p) => [p.code, p.name]));
  } else {
    // A subscriber may read the feed only: check the token against it.
    await api.get('/v1/events', { limit: 1 });
    context.territories = (context.claims.territories || []).map((code) => ({ code, name: code, depth: 0, hasChildren: false }));
  }
}

/** The territories the picker offers: those the token covers (each with those below it). */
function pickable() {
  const scope = context.claims.territories || [];
  if (scope.length === 0) return context.territories;
  const out = [];
  let inside = -1;
  for (const item of context.territories) {
    if (inside >= 0 && item.depth <= inside) inside = -1;
    if (inside < 0 && scope.includes(item.code)) inside = item.depth;
    if (inside >= 0) out.push(item);
  }
  return out.length ? out : context.territories;
}

function showSignIn(message) {
  stopFeed();
  destroyAll();
  context.claims = null;
  document.getElementById('sidebar').hidden = true;
  document.getElementById('who').hidden = true;
  document.getElementById('sign-out').hidden = true;
  const main = document.getElementById('main');
  const input = h('textarea', {
    id: 'token', name: 'token', rows: 4, required: true, autocomplete: 'off', spellcheck: 'false',
    'aria-describedby': 'token-help' + (message ? ' signin-error' : ''),
  });
  const error = h('p', { class: 'field-error', id: 'signin-error', role: 'alert', hidden: !message }, message || '');
  const form = h('form', { class: 'signin', id: 'signin-form', novalidate: true },
    h('h1', {}, t('signin.title')),
    h('p', { id: 'token-help' }, ...withCode(t('signin.intro'), 'filiera token issue --role evaluator --territory LOM')),
    h('label', { for: 'token' }, t('signin.token')),
    input,
    error,
    h('button', { type: 'submit', class: 'btn btn-primary', id: 'signin-submit' }, t('signin.submit')),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const value = input.value.trim().replace(/^Bearer\s+/i, '');
    if (!api.claims(value)) {
      error.textContent = t('signin.malformed');
      error.hidden = false;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    // Someone else signing in starts from their own default page, not the last user's query.
    const subject = api.claims(value).sub ?? '';
    if (window.sessionStorage.getItem('filiera.subject') !== subject) {
      window.history.replaceState(null, '', window.location.pathname + window.location.search);
    }
    window.sessionStorage.setItem('filiera.subject', subject);
    api.signIn(value);
    start();
  });
  main.replaceChildren(h('div', { class: 'signin-wrap' }, form));
  document.body.dataset.rendered = 'signin';
  input.focus();
}

/** `text` with its `{command}` placeholder as a code element. */
function withCode(text, command) {
  const [before, after] = text.split('{command}');
  return [before, h('code', {}, command), after ?? ''];
}

function allowed() {
  return ROUTES.filter((r) => r.roles.includes(context.claims.role));
}

function drawFrame() {
  const claims = context.claims;
  const who = document.getElementById('who');
  const scope = claims.territories?.length ? claims.territories.join(', ') : t('who.all');
  who.replaceChildren(
    h('span', { class: 'who-sub' }, claims.sub || ''),
    h('span', { class: 'who-role' }, t(`role.${claims.role}`)),
    h('span', { class: 'who-scope', title: `${t('who.territories')}: ${scope}` }, scope),
  );
  who.hidden = false;
  document.getElementById('sign-out').hidden = false;
  const sidebar = document.getElementById('sidebar');
  sidebar.setAttribute('aria-label', t('nav.label'));
  sidebar.replaceChildren(
    h('ul', {}, ...allowed().map((r) => h('li', {}, h('a', { href: `#/${r.id}`, 'data-route': r.id, class: 'nav-link' },
      h('span', { class: `nav-icon icon-${r.id}`, 'aria-hidden': 'true' }), t(`nav.${r.id}`))))),
  );
  sidebar.hidden = false;
}

/** The current route and its parameters, from `#/page?key=value…`. */
function parseHash() {
  const [path, query] = window.location.hash.replace(/^#\/?/, '').split('?');
  return { id: path || '', params: new URLSearchParams(query || '') };
}

function defaults(page) {
  const to = today();
  const start = new Date(`${to}T00:00:00Z`);
  start.setUTCMonth(start.getUTCMonth() - 11, 1);
  const scope = context.claims.territories || [];
  return {
    territory: scope.length ? scope[0] : '',
    from: start.toISOString().slice(0, 10),
    to,
    known_at: '',
    ...(page === 'feed' ? { territory: scope.length ? scope[0] : '' } : {}),
  };
}

async function route() {
  if (!context.claims) return;
  const { id, params } = parseHash();
  const routes = allowed();
  const page = routes.find((r) => r.id === id) ?? ROUTES.find((r) => r.id === id);
  if (!page) {
    window.location.replace(`#/${routes[0]?.id ?? 'overview'}`);
    return;
  }
  stopFeed();
  destroyAll();
  controller?.abort();
  controller = new AbortController();
  for (const link of document.querySelectorAll('#sidebar a')) {
    link.toggleAttribute('aria-current', link.dataset.route === page.id);
    if (link.dataset.route === page.id) link.setAttribute('aria-current', 'page');
  }
  const query = { ...defaults(page.id) };
  for (const key of Object.keys(query)) if (params.has(key)) query[key] = params.get(key);
  // The navigation keeps the territory and period from page to page.
  for (const link of document.querySelectorAll('#sidebar a')) {
    const target = ROUTES.find((r) => r.id === link.dataset.route);
    const carried = new URLSearchParams();
    for (const name of target.filters) carried.set(name, query[name] ?? '');
    const text = carried.toString();
    link.setAttribute('href', `#/${target.id}${text ? `?${text}` : ''}`);
  }
  const main = document.getElementById('main');
  const body = h('div', { class: 'page-body', 'aria-busy': 'true' }, h('p', { class: 'loading' }, t('loading')));
  const heading = h('h1', { id: 'page-title' }, t(`nav.${page.id}`));
  main.replaceChildren(
    h('div', { class: 'page-head' }, heading, page.filters.length ? filtersForm(page, query) : null),
    body,
  );
  document.title = `${t(`nav.${page.id}`)} · filiera`;
  if (!page.roles.includes(context.claims.role)) {
    body.replaceChildren(problemBox({ status: 403, problem: { title: t('problem.forbidden_page'), detail: '' } }));
    body.removeAttribute('aria-busy');
    document.body.dataset.rendered = window.location.hash;
    return;
  }
  const signal = controller.signal;
  try {
    await page.render(body, query, { ...context, pickable: pickable() }, signal);
    if (signal.aborted) return;
    body.removeAttribute('aria-busy');
    announce(`${t(`nav.${page.id}`)}: ${t('query.period', {
      territory: query.territory ? (context.names.get(query.territory) ?? query.territory) : t('filters.all'),
      from: fmt.date(query.from), to: fmt.date(query.to),
    })}`);
  } catch (error) {
    if (error.name === 'AbortError' || signal.aborted) return;
    if (error.status === 401) {
      api.signOut();
      showSignIn(error.problem?.detail || t('signin.ended'));
      return;
    }
    body.replaceChildren(problemBox(error));
    body.removeAttribute('aria-busy');
  } finally {
    // Which route the page shows, once drawn (the browser test waits on it).
    if (!signal.aborted) document.body.dataset.rendered = window.location.hash;
  }
}

function filtersForm(page, query) {
  const field = (name, control) => h('div', { class: `field field-${name}` },
    h('label', { for: `f-${name}` }, t(`filters.${name}`)), control);
  const controls = [];
  if (page.filters.includes('territory')) {
    const scope = context.claims.territories || [];
    const options = pickable().map((item) => h('option', {
      value: item.code, selected: item.code === query.territory,
    }, `${'\u00a0\u00a0\u00a0'.repeat(item.depth)}${item.name} (${item.code})`));
    if (scope.length === 0) options.unshift(h('option', { value: '', selected: !query.territory }, t('filters.all')));
    controls.push(field('territory', h('select', { id: 'f-territory', name: 'territory' }, options)));
  }
  for (const name of ['from', 'to']) {
    if (page.filters.includes(name)) {
      controls.push(field(name, h('input', { type: 'date', id: `f-${name}`, name, value: query[name], required: true })));
    }
  }
  if (page.filters.includes('known_at')) {
    controls.push(h('div', { class: 'field field-known_at' },
      h('label', { for: 'f-known_at' }, t('filters.known_at'), h('span', { class: 'hint' }, ` (${t('filters.known_at.hint')})`)),
      h('input', { type: 'date', id: 'f-known_at', name: 'known_at', value: query.known_at })));
  }
  const form = h('form', { class: 'filters', id: 'filters', 'aria-label': t('filters.label') },
    ...controls,
    h('div', { class: 'field field-submit' }, h('button', { type: 'submit', class: 'btn btn-primary', id: 'f-apply' }, t('filters.apply'))));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const next = new URLSearchParams();
    for (const name of page.filters) next.set(name, data.get(name) ?? '');
    const hash = `#/${page.id}?${next}`;
    if (hash === window.location.hash) route();
    else window.location.hash = hash;
  });
  return form;
}

main();
