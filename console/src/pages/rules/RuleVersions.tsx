import { useSearchParams } from "react-router-dom";
import { Field } from "../../shell/forms";
import { CAP_FIELDS } from "./draft";
import { useRuleVersions, type Rule } from "./queries";

const COMPARED: [string, (r: Rule) => string][] = [
  ["Name", (r) => r.name],
  ["Status", (r) => r.status],
  ["Event type", (r) => r.event_type || "(any)"],
  ["Condition", (r) => r.condition || "(always)"],
  ["Formula", (r) => r.formula],
  ["Order", (r) => String(r.order)],
  ["Tier multiplier", (r) => (r.apply_tier_multiplier ? "yes" : "no")],
  ["Stop after match", (r) => (r.stop_after_match ? "yes" : "no")],
  ["Active from", (r) => r.active_from ?? ""],
  ["Active to", (r) => r.active_to ?? ""],
  ...CAP_FIELDS.map(([name, label]): [string, (r: Rule) => string] => [label, (r) => {
    const v = r.caps?.[name];
    return v === null || v === undefined ? "" : String(v);
  }]),
  ["Saved", (r) => (r.updated_at ? new Date(r.updated_at).toLocaleString() : "")],
];

/** A rule's versions, and any two of them side by side (?a=&b= in the URL, so linkable). */
export function RuleVersions({ programId, ruleId }: { programId: string; ruleId: string }) {
  const versions = useRuleVersions(programId, ruleId);
  const [params, setParams] = useSearchParams();
  if (versions.isPending) return <p className="muted" role="status">Loading versions…</p>;
  if (versions.error) return <p className="form-error" role="alert">{versions.error.message}</p>;
  const list = versions.data;
  const latest = list[list.length - 1]?.version ?? 1;
  const a = Number(params.get("a") ?? Math.max(1, latest - 1));
  const b = Number(params.get("b") ?? latest);
  const left = list.find((v) => v.version === a);
  const right = list.find((v) => v.version === b);
  const choose = (key: "a" | "b", value: string) => {
    const next = new URLSearchParams(params);
    next.set(key, value);
    setParams(next, { replace: true });
  };
  return (
    <section className="panel" aria-labelledby="versions-heading">
      <h2 id="versions-heading">Versions ({list.length})</h2>
      <div className="row">
        {(["a", "b"] as const).map((key) => (
          <Field key={key} label={key === "a" ? "Compare version" : "with version"}>
            {(p) => (
              <select {...p} value={key === "a" ? a : b} onChange={(e) => choose(key, e.target.value)}>
                {list.map((v) => <option key={v.version} value={v.version}>v{v.version} · {v.status}</option>)}
              </select>
            )}
          </Field>
        ))}
      </div>
      {left && right ? (
        <div className="table-wrap">
          <table aria-label={`Version ${a} against version ${b}`}>
            <thead><tr><th>Field</th><th>v{a}</th><th>v{b}</th></tr></thead>
            <tbody>
              {COMPARED.map(([label, get]) => {
                const x = get(left), y = get(right);
                return (
                  <tr key={label} className={x !== y ? "diff-changed" : undefined}>
                    <th scope="row">{label}{x !== y ? <span className="muted"> (changed)</span> : null}</th>
                    <td><code>{x}</code></td><td><code>{y}</code></td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      ) : <p className="muted">Choose two versions.</p>}
    </section>
  );
}
