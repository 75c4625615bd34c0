import type { ReactElement } from "react";
import { NavLink } from "react-router-dom";
import { useRouteUnavailable, type RouteName } from "./scopes";

/** A page whose reads the key may not call says so instead of failing on its first request. */
export function Guard({ reads, children }: { reads?: RouteName; children: ReactElement }) {
  const reason = useRouteUnavailable(reads ?? "GET /v1/keys/current");
  if (!reason) return children;
  return (
    <div className="panel unavailable" role="status">
      <h1>Unavailable</h1>
      <p>{reason}</p>
    </div>
  );
}

/** A nav link, shown disabled with the reason when the key may not read its page. */
export function NavItem({ to, label, reads, end }: { to: string; label: string; reads?: RouteName; end?: boolean }) {
  const reason = useRouteUnavailable(reads ?? "GET /v1/keys/current");
  if (reason) {
    return <span className="nav-unavailable" aria-disabled="true" title={reason}>{label} <small>(unavailable)</small></span>;
  }
  return <NavLink to={to} end={end}>{label}</NavLink>;
}
