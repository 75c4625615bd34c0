// The fields of a reward (create and edit share them) and their request bodies.
import { useState } from "react";
import type { components } from "../../api/schema";
import { fieldErrors } from "../../api/errors";
import { Field, FormErrors } from "../../shell/forms";

export type Reward = components["schemas"]["Reward"];
type RewardStatus = components["schemas"]["RewardStatus"];
type CreateBody = components["schemas"]["CreateRewardRequest_Body"];
type UpdateBody = components["schemas"]["UpdateRewardRequest_Body"];

export const REWARD_STATUSES: RewardStatus[] = ["DRAFT", "ACTIVE", "INACTIVE"];
const FIELDS = ["name", "description", "cost_points", "stock", "per_participant_limit.count",
                "per_participant_limit.period", "per_participant_limit", "eligible_tiers", "active_from",
                "active_to", "status"];

export interface RewardDraft {
  name: string;
  description: string;
  cost: string;
  stock: string;
  limitCount: string;
  limitPeriod: string;
  tiers: string;
  activeFrom: string;
  activeTo: string;
  status: RewardStatus;
}

export const EMPTY_REWARD: RewardDraft = {
  name: "", description: "", cost: "", stock: "", limitCount: "", limitPeriod: "", tiers: "",
  activeFrom: "", activeTo: "", status: "DRAFT",
};

/** An API time as the value of a datetime-local input (the operator's local time). */
function localInput(iso: string | null): string {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A datetime-local value as an API time; null when empty. */
function isoOf(local: string): string | null {
  return local ? new Date(local).toISOString() : null;
}

export function draftOf(r: Reward): RewardDraft {
  return {
    name: r.name, description: r.description, cost: String(r.cost_points),
    stock: r.stock === null ? "" : String(r.stock),
    limitCount: r.per_participant_limit ? String(r.per_participant_limit.count) : "",
    limitPeriod: r.per_participant_limit?.period ?? "",
    tiers: r.eligible_tiers.join(", "),
    activeFrom: localInput(r.active_from), activeTo: localInput(r.active_to), status: r.status,
  };
}

/** An integer field as a number (the API names what is wrong with it), null when empty. */
function count(text: string): number | null {
  return text.trim() === "" ? null : Number(text.trim());
}

function limitOf(d: RewardDraft) {
  const n = count(d.limitCount);
  return n === null ? null : { count: n, ...(d.limitPeriod.trim() ? { period: d.limitPeriod.trim() } : {}) };
}

function tiersOf(d: RewardDraft): string[] {
  return d.tiers.split(",").map((t) => t.trim()).filter(Boolean);
}

export function createBody(d: RewardDraft): CreateBody {
  return {
    name: d.name, description: d.description, cost_points: d.cost.trim(), stock: count(d.stock),
    per_participant_limit: limitOf(d), eligible_tiers: tiersOf(d),
    active_from: isoOf(d.activeFrom), active_to: isoOf(d.activeTo), status: d.status,
  };
}

/** A PATCH body: every field sent, an emptied optional field cleared. */
export function updateBody(d: RewardDraft): UpdateBody {
  const limit = limitOf(d);
  const tiers = tiersOf(d);
  const from = isoOf(d.activeFrom);
  const to = isoOf(d.activeTo);
  return {
    name: d.name, description: d.description, cost_points: d.cost.trim(), status: d.status,
    ...(count(d.stock) === null ? { clear_stock: true } : { stock: count(d.stock) }),
    ...(limit ? { per_participant_limit: limit } : { clear_per_participant_limit: true }),
    ...(tiers.length ? { eligible_tiers: tiers } : { clear_eligible_tiers: true }),
    ...(from ? { active_from: from } : { clear_active_from: true }),
    ...(to ? { active_to: to } : { clear_active_to: true }),
  };
}

export function RewardForm({ initial, submitLabel, busy, error, disabled, onSubmit }: {
  initial: RewardDraft;
  submitLabel: string;
  busy: boolean;
  error: unknown;
  disabled: string;
  onSubmit: (draft: RewardDraft) => void;
}) {
  const [draft, setDraft] = useState(initial);
  const errors = fieldErrors(error, FIELDS);
  const set = (k: keyof RewardDraft) => (e: { target: { value: string } }) => setDraft({ ...draft, [k]: e.target.value });
  return (
    <form className="form" onSubmit={(e) => { e.preventDefault(); if (!busy) onSubmit(draft); }}>
      {disabled ? <p className="unavailable">{disabled}</p> : null}
      <FormErrors errors={errors} />
      <div className="row">
        <Field label="Reward name" error={errors.name}>
          {(p) => <input {...p} value={draft.name} onChange={set("name")} />}
        </Field>
        <Field label="Cost in points" error={errors.cost_points} hint="An exact decimal above 0">
          {(p) => <input {...p} inputMode="decimal" value={draft.cost} onChange={set("cost")} />}
        </Field>
        <Field label="Status" error={errors.status}>
          {(p) => (
            <select {...p} value={draft.status} onChange={set("status")}>
              {REWARD_STATUSES.map((s) => <option key={s} value={s}>{s}</option>)}
            </select>
          )}
        </Field>
      </div>
      <Field label="Description" error={errors.description}>
        {(p) => <input {...p} value={draft.description} onChange={set("description")} />}
      </Field>
      <div className="row">
        <Field label="Stock" error={errors.stock} hint="Units left; empty for unlimited">
          {(p) => <input {...p} inputMode="numeric" value={draft.stock} onChange={set("stock")} />}
        </Field>
        <Field label="Limit per participant" error={errors["per_participant_limit.count"] ?? errors.per_participant_limit}
               hint="Redemptions allowed; empty for no limit">
          {(p) => <input {...p} inputMode="numeric" value={draft.limitCount} onChange={set("limitCount")} />}
        </Field>
        <Field label="Limit period" error={errors["per_participant_limit.period"]} hint="ISO 8601 (P1D, P1M); empty = ever">
          {(p) => <input {...p} value={draft.limitPeriod} onChange={set("limitPeriod")} />}
        </Field>
      </div>
      <div className="row">
        <Field label="Eligible tiers" error={errors.eligible_tiers} hint="Comma-separated; empty for everyone">
          {(p) => <input {...p} value={draft.tiers} onChange={set("tiers")} />}
        </Field>
        <Field label="Active from" error={errors.active_from} hint="Empty: from now on">
          {(p) => <input {...p} type="datetime-local" value={draft.activeFrom} onChange={set("activeFrom")} />}
        </Field>
        <Field label="Active to" error={errors.active_to} hint="Empty: no end">
          {(p) => <input {...p} type="datetime-local" value={draft.activeTo} onChange={set("activeTo")} />}
        </Field>
      </div>
      <div className="actions">
        <button type="submit" disabled={busy || Boolean(disabled)}>{submitLabel}</button>
      </div>
    </form>
  );
}
