import { useState, type FormEvent } from "react";
import { ApiError, fieldErrors, locatedExpression, violationsByField, type ExpressionPosition } from "../../api/errors";
import { Field, FormErrors } from "../../shell/forms";
import { CAP_FIELDS, DRAFT_FIELDS, type RuleDraft } from "./draft";
import { ExpressionField } from "./ExpressionField";
import { useDraftValidation } from "./validation";

/** The form of one rule (new or existing), validated against the API while it is typed. */
export function RuleEditor({ programId, initial, submitLabel, busy, saveError, disabled, onSubmit, onChange }: {
  programId: string;
  initial: RuleDraft;
  submitLabel: string;
  busy: boolean;
  saveError: unknown;
  disabled: string;
  onSubmit: (draft: RuleDraft) => void;
  onChange?: (draft: RuleDraft) => void;
}) {
  const [d, setD] = useState(initial);
  const [edited, setEdited] = useState(false);
  const validation = useDraftValidation(programId, d);
  const set = (patch: Partial<RuleDraft>) => {
    const next = { ...d, ...patch };
    setD(next);
    setEdited(true);
    onChange?.(next);
  };
  // The save's answer until the form changes; then what the live check says.
  // The save's answer until the form changes; then what the live check says.
  let errors: Record<string, string> = {};
  let positions: Record<string, ExpressionPosition> = {};
  if (edited && validation.state === "invalid") {
    errors = violationsByField(validation.violations, DRAFT_FIELDS);
    positions = validation.positions;
  } else if (!edited && saveError) {
    errors = fieldErrors(saveError, DRAFT_FIELDS);
    const located = saveError instanceof ApiError ? locatedExpression(saveError) : null;
    if (located) positions = { [located.field]: located.position };
  }

  function submit(e: FormEvent) {
    e.preventDefault();
    setEdited(false);
    onSubmit(d);
  }

  return (
    <form onSubmit={submit} className="form" aria-label={submitLabel}>
      <FormErrors errors={errors} />
      <div className="row">
        <Field label="Rule name" error={errors.name}>
          {(p) => <input {...p} value={d.name} onChange={(e) => set({ name: e.target.value })} required />}
        </Field>
        <Field label="Event type" error={errors.event_type} hint="Empty: events of any type">
          {(p) => <input {...p} value={d.event_type} onChange={(e) => set({ event_type: e.target.value })} />}
        </Field>
        <Field label="Order" error={errors.order}>
          {(p) => <input {...p} type="number" value={d.order} onChange={(e) => set({ order: e.target.value })} />}
        </Field>
      </div>
      <ExpressionField label="Condition" value={d.condition} onChange={(condition) => set({ condition })}
                       error={errors.condition} position={positions.condition}
                       hint="A ZEN expression giving true or false, e.g. properties.amount >= 10; empty: always" />
      <ExpressionField label="Formula" value={d.formula} onChange={(formula) => set({ formula })}
                       error={errors.formula} position={positions.formula}
                       hint="A ZEN expression giving the points, e.g. properties.amount * 2" />
      <p className="muted" role="status" aria-live="polite" data-testid="validation-state">
        {validation.state === "checking" ? "Checking…" : validation.state === "valid" ? "✓ The API accepts this rule."
          : validation.state === "invalid" ? "The API refuses this rule (see above)." : ""}
      </p>
      <div className="row">
        <label className="check"><input type="checkbox" checked={d.apply_tier_multiplier}
          onChange={(e) => set({ apply_tier_multiplier: e.target.checked })} /> Apply the tier multiplier</label>
        <label className="check"><input type="checkbox" checked={d.stop_after_match}
          onChange={(e) => set({ stop_after_match: e.target.checked })} /> Stop after a match</label>
      </div>
      <div className="row">
        <Field label="Active from" error={errors.active_from}>
          {(p) => <input {...p} type="datetime-local" value={d.active_from} onChange={(e) => set({ active_from: e.target.value })} />}
        </Field>
        <Field label="Active to" error={errors.active_to}>
          {(p) => <input {...p} type="datetime-local" value={d.active_to} onChange={(e) => set({ active_to: e.target.value })} />}
        </Field>
      </div>
      <fieldset>
        <legend>Caps (empty: none)</legend>
        {errors.caps ? <p className="field-error" role="alert">{errors.caps}</p> : null}
        <div className="row">
          {CAP_FIELDS.map(([name, label]) => (
            <Field key={name} label={label} error={errors[`caps.${name}`]}>
              {(p) => <input {...p} inputMode="decimal" value={d.caps[name]}
                             onChange={(e) => set({ caps: { ...d.caps, [name]: e.target.value } })} />}
            </Field>
          ))}
        </div>
      </fieldset>
      <div className="actions">
        <button type="submit" disabled={busy || Boolean(disabled)} title={disabled || undefined}>
          {busy ? "Saving…" : submitLabel}
        </button>
        {disabled ? <small className="unavailable">{disabled}</small> : null}
      </div>
    </form>
  );
}
