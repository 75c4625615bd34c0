import { useId, type ReactNode } from "react";
import { fieldErrors } from "../api/errors";

/** A labelled control with the API's error for its field under it. */
export function Field({ label, error, hint, children }: {
  label: string;
  error?: string;
  hint?: string;
  children: (props: { id: string; "aria-invalid": boolean; "aria-describedby"?: string }) => ReactNode;
}) {
  const id = useId();
  const described = error ? `${id}-error` : hint ? `${id}-hint` : undefined;
  return (
    <div className={error ? "field field-invalid" : "field"}>
      <label htmlFor={id}>{label}</label>
      {children({ id, "aria-invalid": Boolean(error), "aria-describedby": described })}
      {hint && !error ? <small id={`${id}-hint`} className="hint">{hint}</small> : null}
      {error ? <small id={`${id}-error`} className="field-error" role="alert">{error}</small> : null}
    </div>
  );
}

/** The errors of a form that names no field of it, shown at its top. */
export function FormErrors({ errors }: { errors: Record<string, string> }) {
  return errors[""] ? <p className="form-error" role="alert">{errors[""]}</p> : null;
}

/** Field errors of a mutation's error for the given form fields. */
export function useFieldErrors(error: unknown, fields: readonly string[]): Record<string, string> {
  return fieldErrors(error, fields);
}

/** Shown in place of an action the key's scopes do not allow. */
export function Unavailable({ scope, children }: { scope: string; children: ReactNode }) {
  return (
    <span className="unavailable" title={`Needs the ${scope} scope`}>
      {children} <small>(needs the <code>{scope}</code> scope)</small>
    </span>
  );
}
