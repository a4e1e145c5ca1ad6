// The JSON API with the signed-in user's bearer token. The token lives in sessionStorage:
// it is gone when the tab closes, and no other site can read it.

const TOKEN_KEY = 'filiera.token';

/** An answer of the API that is not a success: its RFC 9457 problem document. */
export class ApiProblem extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

/** The token of this tab, or null. */
export function token() {
  return window.sessionStorage.getItem(TOKEN_KEY);
}

export function signIn(value) {
  window.sessionStorage.setItem(TOKEN_KEY, value);
}

export function signOut() {
  window.sessionStorage.removeItem(TOKEN_KEY);
}

/**
 * The claims of a token (`sub`, `role`, `territories`, `exp`), read without checking the
 * signature: only to shape the page. The server checks every request.
 */
export function claims(value) {
  const parts = (value || '').split('.');
  if (parts.length !== 3) return null;
  try {
    const base64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const padded = base64 + '='.repeat((4 - (base64.length % 4)) % 4);
    const json = new TextDecoder().decode(Uint8Array.from(atob(padded), (c) => c.charCodeAt(0)));
    const parsed = JSON.parse(json);
    return typeof parsed === 'object' && parsed ? parsed : null;
  } catch {
    return null;
  }
}

/** `path?params` with the empty parameters left out. */
export function url(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') query.set(key, value);
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

/** GET `path` with `params` as JSON; throws an `ApiProblem` for any answer but 2xx. */
export async function get(path, params = {}, { signal } = {}) {
  let response;
  try {
    response = await fetch(url(path, params), {
      headers: { Authorization: `Bearer ${token()}`, Accept: 'application/json' },
      signal,
      cache: 'no-store',
    });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new ApiProblem(0, { title: '', detail: '', code: 'network' });
  }
  if (response.ok) return response.json();
  let problem;
  try {
    problem = await response.json();
  } catch {
    problem = { title: response.statusText, detail: '', status: response.status };
  }
  throw new ApiProblem(response.status, problem);
}
