// What the signed-in key may do, so that the console shows the rest as unavailable up front.
import { useQuery } from "@tanstack/react-query";
import { keyedFetch } from "../api/client";

const ADMIN = "admin";

async function fetchScopes(): Promise<string[] | null> {
  const response = await keyedFetch(new Request(`${window.location.origin}/v1/keys:current`));
  if (!response.ok) return null;
  const body: unknown = await response.json();
  const scopes = (body as { scopes?: unknown }).scopes;
  return Array.isArray(scopes) ? scopes.filter((s): s is string => typeof s === "string") : null;
}

export function useScopes() {
  return useQuery({ queryKey: ["key-scopes"], queryFn: fetchScopes, staleTime: Infinity });
}

/** Why the key may not use `scope` ("" when it may). */
export function useMissingScope(scope: string): string {
  const scopes = useScopes().data;
  if (!scopes || scopes.includes(ADMIN) || scopes.includes(scope)) return "";
  return `Your API key lacks the ${scope} scope.`;
}
