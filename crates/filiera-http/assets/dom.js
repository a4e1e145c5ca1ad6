// A small helper to build elements (no innerHTML: every text is set as text).

/**
 * `h('td', {class: 'num'}, child…)`: attributes whose value is null, undefined or false are
 * left out; `on*` functions become listeners; children may be strings, numbers, nodes or arrays.
 */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      element.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (value === true) {
      element.setAttribute(key, '');
    } else {
      element.setAttribute(key, String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** A figure the test suite and screen readers can find: `data-metric` names its place in the
 * API's document, `data-value` holds the API's value, the text shows it formatted. */
export function metric(path, value, format, tag = 'span', attrs = {}) {
  return h(tag, { ...attrs, 'data-metric': path, 'data-value': JSON.stringify(value ?? null) }, format(value));
}

/** Says `text` to screen readers (a polite live region). */
export function announce(text) {
  const region = document.getElementById('announcer');
  if (region) {
    region.textContent = '';
    window.setTimeout(() => { region.textContent = text; }, 50);
  }
}
