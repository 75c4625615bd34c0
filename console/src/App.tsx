import { useSyncExternalStore } from "react";
import { Navigate, Route, Routes } from "react-router-dom";
import { getApiKey, onSessionChange } from "./api/session";
import { globalPages, programPages } from "./routes";
import { Guard } from "./shell/Guard";
import { Layout } from "./shell/Layout";
import { SignIn } from "./shell/SignIn";

export function App() {
  const key = useSyncExternalStore(onSessionChange, getApiKey);
  if (!key) return <SignIn />;
  return (
    <Routes>
      <Route element={<Layout />}>
        <Route index element={<Navigate to="/programs" replace />} />
        {globalPages.map((p) => <Route key={p.path} path={p.path} element={<Guard reads={p.reads}>{p.element}</Guard>} />)}
        <Route path="programs/:programId">
          {programPages.map((p) => p.path === ""
            ? <Route key="index" index element={<Guard reads={p.reads}>{p.element}</Guard>} />
            : <Route key={p.path} path={p.path} element={<Guard reads={p.reads}>{p.element}</Guard>} />)}
        </Route>
        <Route path="*" element={<NotFound />} />
      </Route>
    </Routes>
  );
}

function NotFound() {
  return (
    <div className="panel">
      <h1>Not found</h1>
      <p>No console page has this address.</p>
    </div>
  );
}
