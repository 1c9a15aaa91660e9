// HTTP calls to the node, with the API key or token kept in localStorage. A 401 asks for a
// credential (the page itself and its assets never need one).

const TOKEN_KEY = 'pulsewire.token';

export function token(): string | null {
  return localStorage.getItem(TOKEN_KEY);
}

export function setToken(t: string | null) {
  if (t) localStorage.setItem(TOKEN_KEY, t);
  else localStorage.removeItem(TOKEN_KEY);
  window.dispatchEvent(new CustomEvent('pulsewire-token'));
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

let asking = false;

/** Shows the credential dialog (once at a time). */
export function askForToken(reason: string) {
  if (asking) return;
  const dialog = document.getElementById('token-dialog') as HTMLDialogElement | null;
  if (!dialog) return;
  asking = true;
  (dialog.querySelector('[data-reason]') as HTMLElement).textContent = reason;
  const input = dialog.querySelector('input') as HTMLInputElement;
  input.value = token() ?? '';
  dialog.onclose = () => {
    asking = false;
    if (dialog.returnValue === 'save') setToken(input.value.trim() || null);
  };
  dialog.showModal();
}

export async function api<T = unknown>(path: string, init: RequestInit = {}): Promise<T> {
  const headers = new Headers(init.headers);
  const t = token();
  if (t) headers.set('Authorization', `Bearer ${t}`);
  if (init.body && !headers.has('Content-Type')) headers.set('Content-Type', 'application/json');
  const resp = await fetch(path, { ...init, headers });
  if (resp.status === 204) return undefined as T;
  const text = await resp.text();
  let body: unknown = undefined;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = text;
  }
  if (!resp.ok) {
    const b = (body ?? {}) as { code?: string; message?: string; error?: string };
    const message = b.message ?? b.error ?? (typeof body === 'string' ? body : resp.statusText);
    if (resp.status === 401) askForToken(`The node answered 401 (${message}). Enter an API key or connection token.`);
    throw new ApiError(resp.status, b.code ?? String(resp.status), message);
  }
  return body as T;
}

export const enc = encodeURIComponent;
