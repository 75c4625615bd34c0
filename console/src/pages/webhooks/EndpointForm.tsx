// The fields of a webhook endpoint (create and edit share them).
import { useState } from "react";
import { fieldErrors } from "../../api/errors";
import { Field, FormErrors } from "../../shell/forms";

export interface EndpointDraft {
  url: string;
  events: string;
  description: string;
}

/** enabled_events from the comma-separated text ("*" when empty). */
export function eventsOf(text: string): string[] {
  const list = text.split(",").map((s) => s.trim()).filter(Boolean);
  return list.length ? list : ["*"];
}

export function EndpointForm({ initial, submitLabel, busy, error, disabled, onSubmit }: {
  initial: EndpointDraft;
  submitLabel: string;
  busy: boolean;
  error: unknown;
  disabled: string;
  onSubmit: (draft: EndpointDraft) => void;
}) {
  const [draft, setDraft] = useState(initial);
  const errors = fieldErrors(error, ["url", "enabled_events", "description"]);
  const set = (k: keyof EndpointDraft) => (e: { target: { value: string } }) => setDraft({ ...draft, [k]: e.target.value });
  return (
    <form className="form" onSubmit={(e) => { e.preventDefault(); onSubmit(draft); }}>
      {disabled ? <p className="unavailable">{disabled}</p> : null}
      <FormErrors errors={errors} />
      <Field label="URL" error={errors.url} hint="Where deliveries are POSTed, e.g. https://example.com/hooks">
        {(p) => <input {...p} type="url" value={draft.url} onChange={set("url")} />}
      </Field>
      <div className="row">
        <Field label="Event types" error={errors.enabled_events} hint="Comma-separated; empty or * for all">
          {(p) => <input {...p} value={draft.events} onChange={set("events")} />}
        </Field>
        <Field label="Description" error={errors.description}>
          {(p) => <input {...p} value={draft.description} onChange={set("description")} />}
        </Field>
      </div>
      <div className="actions">
        <button type="submit" disabled={busy || Boolean(disabled)}>{submitLabel}</button>
      </div>
    </form>
  );
}

/** A signing secret shown once, right after it is made. */
export function SecretOnce({ secret, onDone }: { secret: string; onDone: () => void }) {
  return (
    <div className="panel warn" role="status">
      <p><strong>Signing secret</strong> (shown once; copy it now, it cannot be read again):</p>
      <pre className="json" data-testid="webhook-secret">{secret}</pre>
      <button type="button" className="secondary" onClick={onDone}>I have copied it</button>
    </div>
  );
}
