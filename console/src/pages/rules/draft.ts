// A rule as its form edits it (text fields), and the request bodies made from it.
import type { Rule, RuleCaps } from "./queries";

export const CAP_FIELDS = [
  ["max_points_per_event", "Max points per event"],
  ["per_participant_daily", "Per participant per day"],
  ["per_participant_weekly", "Per participant per week"],
  ["per_participant_monthly", "Per participant per month"],
  ["per_participant_lifetime", "Per participant, lifetime"],
  ["total_budget", "Total budget"],
] as const;
type CapName = (typeof CAP_FIELDS)[number][0];

export interface RuleDraft {
  name: string;
  event_type: string;
  condition: string;
  formula: string;
  apply_tier_multiplier: boolean;
  order: string;
  stop_after_match: boolean;
  active_from: string;
  active_to: string;
  caps: Record<CapName, string>;
}

/** "2026-01-31T10:00" in local time, as <input type="datetime-local"> shows it. */
function localInput(iso: string | null | undefined): string {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function isoOf(local: string): string | null {
  return local ? new Date(local).toISOString() : null;
}

export function ruleDraft(rule?: Rule, nextOrder = 0): RuleDraft {
  const caps = Object.fromEntries(CAP_FIELDS.map(([name]) => {
    const v = rule?.caps?.[name];
    return [name, v === null || v === undefined ? "" : String(v)];
  })) as Record<CapName, string>;
  return {
    name: rule?.name ?? "",
    event_type: rule?.event_type ?? "",
    condition: rule?.condition ?? "",
    formula: rule?.formula ?? "",
    apply_tier_multiplier: rule?.apply_tier_multiplier ?? true,
    order: String(rule?.order ?? nextOrder),
    stop_after_match: rule?.stop_after_match ?? false,
    active_from: localInput(rule?.active_from),
    active_to: localInput(rule?.active_to),
    caps,
  };
}

function capsOf(d: RuleDraft): RuleCaps | null {
  const set = CAP_FIELDS.filter(([name]) => d.caps[name].trim() !== "");
  return set.length ? Object.fromEntries(set.map(([name]) => [name, d.caps[name].trim()])) : null;
}

/** The body of CreateRule (also a draft rule of rules:simulate). */
export function createBody(d: RuleDraft) {
  return {
    name: d.name,
    event_type: d.event_type,
    condition: d.condition,
    formula: d.formula,
    apply_tier_multiplier: d.apply_tier_multiplier,
    order: Number(d.order || 0),
    stop_after_match: d.stop_after_match,
    active_from: isoOf(d.active_from),
    active_to: isoOf(d.active_to),
    caps: capsOf(d),
  };
}

/** The body of UpdateRule: every field, so the saved version is the form. */
export function updateBody(d: RuleDraft) {
  const body = createBody(d);
  return {
    ...body,
    caps: body.caps ?? {},
    clear_active_from: body.active_from === null,
    clear_active_to: body.active_to === null,
  };
}

export const DRAFT_FIELDS = ["name", "event_type", "condition", "formula", "apply_tier_multiplier", "order",
  "stop_after_match", "active_from", "active_to", "caps", ...CAP_FIELDS.map(([n]) => `caps.${n}`)];
