import { Outlet, useLocation, useMatch } from "react-router-dom";
import { useQueryClient } from "@tanstack/react-query";
import { signOut } from "../api/session";
import { globalPages, programPages } from "../routes";
import { Banner } from "./Banner";
import { ErrorBoundary } from "./ErrorBoundary";
import { NavItem } from "./Guard";
import { useProgramName } from "../pages/programs/queries";

export function Layout() {
  const location = useLocation();
  const match = useMatch("/programs/:programId/*");
  const programId = match?.params.programId;
  const programName = useProgramName(programId);
  const queries = useQueryClient();
  return (
    <div className="app">
      <a className="skip" href="#main">Skip to content</a>
      <header className="topbar">
        <span className="brand">Accrual</span>
        <nav aria-label="Console">
          <ul>
            {globalPages.filter((p) => p.label).map((p) => (
              <li key={p.path}><NavItem to={`/${p.path}`} label={p.label!} reads={p.reads} end={p.path === "programs"} /></li>
            ))}
          </ul>
        </nav>
        <button type="button" className="link" onClick={() => { queries.clear(); signOut(); }}>
          Sign out
        </button>
      </header>
      {programId ? (
        <nav aria-label="Program" className="subnav">
          <span className="program-name">{programName ?? programId}</span>
          <ul>
            {programPages.filter((p) => p.label).map((p) => (
              <li key={p.path}>
                <NavItem to={`/programs/${programId}${p.path ? `/${p.path}` : ""}`} label={p.label!} reads={p.reads}
                         end={p.path === ""} />
              </li>
            ))}
          </ul>
        </nav>
      ) : null}
      <Banner />
      <main id="main" tabIndex={-1}>
        <ErrorBoundary key={location.pathname}>
          <Outlet />
        </ErrorBoundary>
      </main>
    </div>
  );
}
