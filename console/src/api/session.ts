// The API key lives in sessionStorage only: it dies with the tab and never reaches a URL or log.
const STORAGE_KEY = "accrual.console.apiKey";
type Listener = () => void;
const listeners = new Set<Listener>();
let signOutReason = "";

export function getApiKey(): string | null {
  return sessionStorage.getItem(STORAGE_KEY);
}

export function signIn(key: string): void {
  sessionStorage.setItem(STORAGE_KEY, key.trim());
  signOutReason = "";
  listeners.forEach((l) => l());
}

/** Forgets the key; `reason` is shown on the sign-in form (for example the API's 401). */
export function signOut(reason = ""): void {
  sessionStorage.removeItem(STORAGE_KEY);
  signOutReason = reason;
  listeners.forEach((l) => l());
}

export function lastSignOutReason(): string {
  return signOutReason;
}

export function onSessionChange(listener: Listener): () => void {
  listeners.add(listener);
  return () => {
    listeners.delete(listener);
  };
}
