// What the signed-in key may do, so that the console shows the rest as unavailable up front
// instead of as an error after a click. The key's scopes come from GET /v1/keys/current and the
// scope of each route from the OpenAPI document (api/scopes.json, made by `make console-types`).
import { useQuery } from "@tanstack/react-query";
import { api, unwrap } from "../api/client";
import routeScopes from "../api/scopes.json";

export type RouteName = keyof typeof routeScopes;
/** Scope of a route any valid key may call. */
const ANY_KEY = "authenticated";

export function useCurrentKey() {
  return useQuery({
    queryKey: ["key-current"],
    queryFn: () => unwrap(api.GET("/v1/keys/current")),
    staleTime: Infinity,
  });
}

/** Why the key may not use `scope` ("" when it may, or while its scopes are not known yet:
 * the API refuses what is not allowed anyway). */
export function useMissingScope(scope: string): string {
  const allowed = useCurrentKey().data?.allowed_scopes;
  if (!allowed || scope === ANY_KEY || allowed.includes(scope)) return "";
  return `Unavailable: your API key lacks the ${scope} scope.`;
}

/** Why the key may not call `route` ("POST /v1/programs"); "" when it may. */
export function useRouteUnavailable(route: RouteName): string {
  return useMissingScope(routeScopes[route]);
}
