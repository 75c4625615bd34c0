import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient, type QueryKey } from "@tanstack/react-query";
import { fieldErrors } from "../../api/errors";
import { Field, FormErrors } from "../../shell/forms";
import { useRouteUnavailable, type RouteName } from "../../shell/scopes";

export interface PropertyDraft { name: string; type: string; required: boolean }
export interface EventTypeDraft {
  name: string;
  description: string;
  allow_unknown_properties: boolean;
  properties: PropertyDraft[];
}

/** What differs between a program's event types and the CDP registry. */
export interface EventTypeStore {
  key: QueryKey;
  /** The route whose scope changes need (its writes share one scope). */
  writeRoute: RouteName;
  kinds: readonly string[];
  description: boolean;
  allowUnknown: boolean;
  list: () => Promise<EventTypeDraft[]>;
  create: (d: EventTypeDraft) => Promise<unknown>;
  update: (d: EventTypeDraft) => Promise<unknown>;
  remove: (name: string) => Promise<unknown>;
}

const EMPTY: EventTypeDraft = { name: "", description: "", allow_unknown_properties: false, properties: [] };

/** List, create, edit and delete event types with their typed properties. */
export function EventTypeAdmin({ store }: { store: EventTypeStore }) {
  const queries = useQueryClient();
  const types = useQuery({ queryKey: store.key, queryFn: store.list });
  const [editing, setEditing] = useState<EventTypeDraft | null>(null);
  const cannotWrite = useRouteUnavailable(store.writeRoute);
  const done = () => {
    setEditing(null);
    void queries.invalidateQueries({ queryKey: store.key });
  };
  const save = useMutation({
    mutationFn: (d: { draft: EventTypeDraft; isNew: boolean }) => (d.isNew ? store.create(d.draft) : store.update(d.draft)),
    onSuccess: done,
  });
  const remove = useMutation({ mutationFn: store.remove, onSuccess: done });
  const list = types.data ?? [];
  return (
    <>
      <section className="panel" aria-labelledby="types-heading">
        <h2 id="types-heading">Registered types</h2>
        {types.isPending ? <p className="muted" role="status">Loading…</p> : null}
        {types.error ? <p className="form-error" role="alert">{types.error.message}</p> : null}
        {remove.error ? <p className="form-error" role="alert">{remove.error.message}</p> : null}
        {types.data && list.length === 0 ? <p className="muted">No event type registered yet.</p> : null}
        {list.length ? (
          <div className="table-wrap">
            <table>
              <thead><tr><th>Name</th><th>Properties</th>{store.description ? <th className="hide-narrow">Description</th> : null}
                {store.allowUnknown ? <th className="hide-narrow">Other properties</th> : null}<th>Actions</th></tr></thead>
              <tbody>
                {list.map((t) => (
                  <tr key={t.name}>
                    <td><code>{t.name}</code></td>
                    <td>{t.properties.map((p) => `${p.name}: ${p.type}${p.required ? " (required)" : ""}`).join(", ") || "—"}</td>
                    {store.description ? <td className="hide-narrow">{t.description}</td> : null}
                    {store.allowUnknown ? <td className="hide-narrow">{t.allow_unknown_properties ? "allowed" : "refused"}</td> : null}
                    <td className="actions">
                      <button type="button" className="secondary" aria-label={`Edit ${t.name}`} disabled={Boolean(cannotWrite)}
                              title={cannotWrite || undefined} onClick={() => { save.reset(); setEditing(t); }}>Edit</button>
                      <button type="button" className="danger" aria-label={`Delete ${t.name}`} disabled={Boolean(cannotWrite) || remove.isPending}
                              title={cannotWrite || undefined}
                              onClick={() => window.confirm(`Delete the event type “${t.name}”?`) && remove.mutate(t.name)}>Delete</button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : null}
        {cannotWrite ? <p className="unavailable">{cannotWrite} Changes are unavailable.</p> : null}
      </section>
      <section className="panel" aria-labelledby="type-form-heading">
        <h2 id="type-form-heading">{editing ? `Edit ${editing.name}` : "New event type"}</h2>
        <EventTypeForm key={editing?.name ?? "new"} store={store} initial={editing ?? EMPTY} isNew={!editing}
                       busy={save.isPending} error={save.error} disabled={cannotWrite}
                       onCancel={editing ? () => setEditing(null) : undefined}
                       onSubmit={(draft) => save.mutate({ draft, isNew: !editing })} />
      </section>
    </>
  );
}

function EventTypeForm({ store, initial, isNew, busy, error, disabled, onSubmit, onCancel }: {
  store: EventTypeStore;
  initial: EventTypeDraft;
  isNew: boolean;
  busy: boolean;
  error: unknown;
  disabled: string;
  onSubmit: (d: EventTypeDraft) => void;
  onCancel?: () => void;
}) {
  const [d, setD] = useState(initial);
  const fields = ["name", "description", "properties", "allow_unknown_properties",
    ...d.properties.flatMap((_, i) => [`properties[${i}]`, `properties[${i}].name`, `properties[${i}].type`])];
  const errors = fieldErrors(error, fields);
  const setProperty = (i: number, patch: Partial<PropertyDraft>) =>
    setD({ ...d, properties: d.properties.map((p, j) => (j === i ? { ...p, ...patch } : p)) });
  function submit(e: FormEvent) {
    e.preventDefault();
    onSubmit(d);
  }
  return (
    <form onSubmit={submit} className="form" aria-label={isNew ? "New event type" : `Edit ${initial.name}`}>
      <FormErrors errors={errors} />
      <Field label="Event type name" error={errors.name}>
        {(p) => <input {...p} value={d.name} readOnly={!isNew} onChange={(e) => setD({ ...d, name: e.target.value })} />}
      </Field>
      {store.description ? (
        <Field label="Description" error={errors.description}>
          {(p) => <input {...p} value={d.description} onChange={(e) => setD({ ...d, description: e.target.value })} />}
        </Field>
      ) : null}
      {store.allowUnknown ? (
        <label className="check"><input type="checkbox" checked={d.allow_unknown_properties}
          onChange={(e) => setD({ ...d, allow_unknown_properties: e.target.checked })} /> Allow properties that are not declared</label>
      ) : null}
      <fieldset>
        <legend>Properties</legend>
        {errors.properties ? <p className="field-error" role="alert">{errors.properties}</p> : null}
        {d.properties.map((prop, i) => (
          <div className="row" key={i} role="group" aria-label={`Property ${i + 1}`}>
            <Field label={`Property ${i + 1} name`} error={errors[`properties[${i}].name`] ?? errors[`properties[${i}]`]}>
              {(p) => <input {...p} value={prop.name} onChange={(e) => setProperty(i, { name: e.target.value })} />}
            </Field>
            <Field label={`Property ${i + 1} type`} error={errors[`properties[${i}].type`]}>
              {(p) => (
                <select {...p} value={prop.type} onChange={(e) => setProperty(i, { type: e.target.value })}>
                  {store.kinds.map((k) => <option key={k} value={k}>{k}</option>)}
                </select>
              )}
            </Field>
            <label className="check"><input type="checkbox" checked={prop.required}
              onChange={(e) => setProperty(i, { required: e.target.checked })} /> required</label>
            <button type="button" className="secondary" aria-label={`Remove property ${i + 1}`}
                    onClick={() => setD({ ...d, properties: d.properties.filter((_, j) => j !== i) })}>Remove</button>
          </div>
        ))}
        <button type="button" className="secondary"
                onClick={() => setD({ ...d, properties: [...d.properties, { name: "", type: store.kinds[0], required: false }] })}>
          Add property
        </button>
      </fieldset>
      <div className="actions">
        <button type="submit" disabled={busy || Boolean(disabled)} title={disabled || undefined}>
          {busy ? "Saving…" : isNew ? "Create event type" : "Save event type"}
        </button>
        {onCancel ? <button type="button" className="secondary" onClick={onCancel}>Cancel</button> : null}
      </div>
    </form>
  );
}
