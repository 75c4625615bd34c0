import { useState, type FormEvent } from "react";
import type { components } from "../../api/schema";
import { Field, FormErrors, useFieldErrors } from "../../shell/forms";
import type { Program } from "./queries";

type Schemas = components["schemas"];
type TriggerName = "birthday" | "anniversary" | "inactivity";
const TRIGGERS: TriggerName[] = ["birthday", "anniversary", "inactivity"];

interface TierDraft { name: string; min_lifetime_points: string; multiplier: string }
interface TriggerDraft { enabled: boolean; event_type: string; days: string }

export interface ProgramDraft {
  name: string;
  on_unknown_participant: Schemas["UnknownParticipantPolicy"];
  tiers: TierDraft[];
  rounding_mode: Schemas["RoundingMode"];
  rounding_precision: string;
  event_type_policy: Schemas["EventTypePolicy"];
  triggers: Record<TriggerName, TriggerDraft>;
}

const TRIGGER_DEFAULTS: Record<TriggerName, TriggerDraft> = {
  birthday: { enabled: false, event_type: "birthday", days: "" },
  anniversary: { enabled: false, event_type: "anniversary", days: "" },
  inactivity: { enabled: false, event_type: "inactivity", days: "90" },
};

export function draftOf(program?: Program): ProgramDraft {
  const triggers = { ...TRIGGER_DEFAULTS };
  for (const name of TRIGGERS) {
    const t = program?.scheduled_triggers?.[name];
    if (t) triggers[name] = { enabled: Boolean(t.enabled), event_type: t.event_type ?? "", days: t.days ? String(t.days) : "" };
  }
  return {
    name: program?.name ?? "",
    on_unknown_participant: program?.on_unknown_participant ?? "CREATE",
    tiers: (program?.tiers ?? []).map((t) => ({
      name: t.name ?? "", min_lifetime_points: String(t.min_lifetime_points ?? ""), multiplier: String(t.multiplier ?? ""),
    })),
    rounding_mode: program?.rounding_mode ?? "FLOOR",
    rounding_precision: String(program?.rounding_precision ?? 0),
    event_type_policy: program?.event_type_policy ?? "OPEN",
    triggers,
  };
}

/** The request body of a draft; numbers stay decimal strings, as the API accepts them. */
export function bodyOf(d: ProgramDraft) {
  const scheduled_triggers: Schemas["ScheduledTriggers"] = {};
  for (const name of TRIGGERS) {
    const t = d.triggers[name];
    scheduled_triggers[name] = { enabled: t.enabled, event_type: t.event_type, ...(t.days ? { days: Number(t.days) } : {}) };
  }
  return {
    name: d.name,
    on_unknown_participant: d.on_unknown_participant,
    tiers: d.tiers.map((t) => ({ name: t.name, min_lifetime_points: t.min_lifetime_points, multiplier: t.multiplier })),
    rounding_mode: d.rounding_mode,
    rounding_precision: Number(d.rounding_precision),
    event_type_policy: d.event_type_policy,
    scheduled_triggers,
  };
}

function formFields(d: ProgramDraft): string[] {
  return ["name", "on_unknown_participant", "tiers", "rounding_mode", "rounding_precision", "event_type_policy",
    ...d.tiers.flatMap((_, i) => [`tiers[${i}]`, `tiers[${i}].name`, `tiers[${i}].min_lifetime_points`, `tiers[${i}].multiplier`]),
    ...TRIGGERS.flatMap((n) => [`scheduled_triggers.${n}`, `scheduled_triggers.${n}.event_type`, `scheduled_triggers.${n}.days`])];
}

export function ProgramForm({ initial, submitLabel, busy, error, disabled, onSubmit }: {
  initial: ProgramDraft;
  submitLabel: string;
  busy: boolean;
  error: unknown;
  disabled?: string;
  onSubmit: (draft: ProgramDraft) => void;
}) {
  const [d, setD] = useState(initial);
  const errors = useFieldErrors(error, formFields(d));
  const set = (patch: Partial<ProgramDraft>) => setD({ ...d, ...patch });
  const setTier = (i: number, patch: Partial<TierDraft>) =>
    set({ tiers: d.tiers.map((t, j) => (j === i ? { ...t, ...patch } : t)) });
  const setTrigger = (name: TriggerName, patch: Partial<TriggerDraft>) =>
    set({ triggers: { ...d.triggers, [name]: { ...d.triggers[name], ...patch } } });

  function submit(e: FormEvent) {
    e.preventDefault();
    onSubmit(d);
  }

  return (
    <form onSubmit={submit} className="form" aria-label={submitLabel}>
      <FormErrors errors={errors} />
      <Field label="Name" error={errors.name}>
        {(p) => <input {...p} value={d.name} onChange={(e) => set({ name: e.target.value })} required maxLength={200} />}
      </Field>
      <div className="row">
        <Field label="Unknown participant" error={errors.on_unknown_participant}
               hint="What an event for an unknown external id does">
          {(p) => (
            <select {...p} value={d.on_unknown_participant}
                    onChange={(e) => set({ on_unknown_participant: e.target.value as ProgramDraft["on_unknown_participant"] })}>
              <option value="CREATE">Create the participant</option>
              <option value="REJECT">Reject the event</option>
            </select>
          )}
        </Field>
        <Field label="Event types" error={errors.event_type_policy}>
          {(p) => (
            <select {...p} value={d.event_type_policy}
                    onChange={(e) => set({ event_type_policy: e.target.value as ProgramDraft["event_type_policy"] })}>
              <option value="OPEN">Open: any event type</option>
              <option value="REGISTERED">Registered types only</option>
            </select>
          )}
        </Field>
        <Field label="Rounding" error={errors.rounding_mode}>
          {(p) => (
            <select {...p} value={d.rounding_mode}
                    onChange={(e) => set({ rounding_mode: e.target.value as ProgramDraft["rounding_mode"] })}>
              {["FLOOR", "CEILING", "HALF_UP", "HALF_EVEN"].map((m) => <option key={m} value={m}>{m}</option>)}
            </select>
          )}
        </Field>
        <Field label="Decimal places" error={errors.rounding_precision}>
          {(p) => <input {...p} type="number" min={0} value={d.rounding_precision}
                         onChange={(e) => set({ rounding_precision: e.target.value })} />}
        </Field>
      </div>
      <fieldset>
        <legend>Tiers</legend>
        {errors.tiers ? <p className="field-error" role="alert">{errors.tiers}</p> : null}
        {d.tiers.length === 0 ? <p className="muted">No tiers: every participant is in no tier.</p> : null}
        {d.tiers.map((t, i) => (
          <div className="row tier" key={i} role="group" aria-label={`Tier ${i + 1}`}>
            <Field label={`Tier ${i + 1} name`} error={errors[`tiers[${i}].name`] ?? errors[`tiers[${i}]`]}>
              {(p) => <input {...p} value={t.name} onChange={(e) => setTier(i, { name: e.target.value })} />}
            </Field>
            <Field label={`Tier ${i + 1} lifetime points from`} error={errors[`tiers[${i}].min_lifetime_points`]}>
              {(p) => <input {...p} inputMode="decimal" value={t.min_lifetime_points}
                             onChange={(e) => setTier(i, { min_lifetime_points: e.target.value })} />}
            </Field>
            <Field label={`Tier ${i + 1} multiplier`} error={errors[`tiers[${i}].multiplier`]}>
              {(p) => <input {...p} inputMode="decimal" value={t.multiplier}
                             onChange={(e) => setTier(i, { multiplier: e.target.value })} />}
            </Field>
            <button type="button" className="secondary" aria-label={`Remove tier ${i + 1}`}
                    onClick={() => set({ tiers: d.tiers.filter((_, j) => j !== i) })}>Remove</button>
          </div>
        ))}
        <button type="button" className="secondary" onClick={() => set({
          tiers: [...d.tiers, { name: "", min_lifetime_points: d.tiers.length ? "" : "0", multiplier: "1" }],
        })}>Add tier</button>
      </fieldset>
      <fieldset>
        <legend>Scheduled triggers</legend>
        {TRIGGERS.map((name) => (
          <div className="row" key={name} role="group" aria-label={`${name} trigger`}>
            <label className="check">
              <input type="checkbox" checked={d.triggers[name].enabled}
                     onChange={(e) => setTrigger(name, { enabled: e.target.checked })} /> {name}
            </label>
            <Field label={`${name} event type`} error={errors[`scheduled_triggers.${name}.event_type`] ?? errors[`scheduled_triggers.${name}`]}>
              {(p) => <input {...p} value={d.triggers[name].event_type}
                             onChange={(e) => setTrigger(name, { event_type: e.target.value })} />}
            </Field>
            {name === "inactivity" ? (
              <Field label="inactive for days" error={errors[`scheduled_triggers.${name}.days`]}>
                {(p) => <input {...p} type="number" min={1} value={d.triggers[name].days}
                               onChange={(e) => setTrigger(name, { days: e.target.value })} />}
              </Field>
            ) : null}
          </div>
        ))}
      </fieldset>
      <button type="submit" disabled={busy || Boolean(disabled)} title={disabled}>
        {busy ? "Saving…" : submitLabel}
      </button>
      {disabled ? <small className="muted"> {disabled}</small> : null}
    </form>
  );
}
