import { useState, type FormEvent } from "react";
import { api } from "../api/client";
import { ApiError, apiErrorOf } from "../api/errors";
import { lastSignOutReason, signIn } from "../api/session";
import { Field } from "./forms";

/** Asks for an API key and keeps it for this tab only once the API has accepted it. */
export function SignIn() {
  const [key, setKey] = useState("");
  const [error, setError] = useState(lastSignOutReason());
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    if (!key.trim()) {
      setError("Enter an API key.");
      return;
    }
    setBusy(true);
    setError("");
    try {
      // Any valid key may read itself; what its scopes allow is shown as the pages load.
      const { response, error: body } = await api.GET("/v1/keys/current", {
        headers: { "X-API-Key": key.trim() },
      });
      if (!response.ok) {
        setError(`The API refused the key: ${apiErrorOf(response, body).message}`);
        return;
      }
      signIn(key);
    } catch (cause) {
      setError(cause instanceof ApiError ? cause.message : String(cause));
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="signin">
      <h1>Accrual console</h1>
      <form onSubmit={submit} className="panel" aria-label="Sign in">
        <Field label="API key" error={error}
               hint="Kept in this browser tab only; closing the tab forgets it.">
          {(props) => (
            <input {...props} type="password" name="api-key" autoComplete="off" value={key}
                   onChange={(e) => setKey(e.target.value)} autoFocus />
          )}
        </Field>
        <button type="submit" disabled={busy}>{busy ? "Checking…" : "Sign in"}</button>
      </form>
      <p className="hint">
        <code>make run</code> prints the admin key of the embedded suite; <code>make keys</code> creates others.
      </p>
    </main>
  );
}
