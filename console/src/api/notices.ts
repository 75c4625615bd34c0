// Server-side failures (5xx, lost connection) shown as one banner, with the request id.
import { useSyncExternalStore } from "react";
import type { ApiError } from "./errors";

export interface Notice {
  message: string;
  requestId: string;
  at: number;
}

let current: Notice | null = null;
const listeners = new Set<() => void>();

function emit(): void {
  listeners.forEach((l) => l());
}

export function reportFailure(error: ApiError): void {
  current = { message: error.message, requestId: error.requestId, at: Date.now() };
  emit();
}

export function dismissNotice(): void {
  current = null;
  emit();
}

export function useNotice(): Notice | null {
  return useSyncExternalStore((l) => {
    listeners.add(l);
    return () => listeners.delete(l);
  }, () => current);
}
