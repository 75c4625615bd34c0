import { NavLink, Outlet, useLocation, useMatch } from "react-router-dom";
import { useQueryClient } from "@tanstack/react-query";
import { signOut } from "../api/session";
import { globalPages, programPages } from "../routes";
import { Banner } from "./Banner";
import { ErrorBoundary } from "./ErrorBoundary";
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
              <li key={p.path}><NavLink to={`/${p.path}`} end={p.path === "programs"}>{p.label}</NavLink></li>
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
                <NavLink to={`/programs/${programId}${p.path ? `/${p.path}` : ""}`} end={p.path === ""}>
                  {p.label}
                </NavLink>
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
