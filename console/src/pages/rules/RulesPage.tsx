import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Link, useNavigate, useParams } from "react-router-dom";
import { api, unwrap } from "../../api/client";
import { useRouteUnavailable } from "../../shell/scopes";
import { ruleDraft, createBody, updateBody, type RuleDraft } from "./draft";
import { RuleEditor } from "./RuleEditor";
import { RuleVersions } from "./RuleVersions";
import { SimulatePanel } from "./SimulatePanel";
import { useRules, type Rule } from "./queries";

/** Rules in evaluation order with their actions; the chosen rule (or a new one) in the editor. */
export function RulesPage() {
  const { programId = "", ruleId } = useParams();
  const navigate = useNavigate();
  const queries = useQueryClient();
  const rules = useRules(programId);
  const cannotWrite = useRouteUnavailable("PATCH /v1/programs/{program_id}/rules/{rule_id}");
  const [editing, setEditing] = useState<RuleDraft | null>(null);
  const refresh = () => queries.invalidateQueries({ queryKey: ["rules", programId] });
  const path = { program_id: programId };

  const save = useMutation({
    mutationFn: (d: RuleDraft) => ruleId
      ? unwrap(api.PATCH("/v1/programs/{program_id}/rules/{rule_id}", { params: { path: { ...path, rule_id: ruleId } }, body: updateBody(d) }))
      : unwrap(api.POST("/v1/programs/{program_id}/rules", { params: { path }, body: createBody(d) })),
    onSuccess: (rule) => {
      void refresh();
      void queries.invalidateQueries({ queryKey: ["rule-versions", programId, rule.rule_id] });
      if (!ruleId) navigate(`/programs/${programId}/rules/${rule.rule_id}`);
    },
  });
  const act = useMutation({
    mutationFn: async (change: { rule: Rule; to: "ACTIVE" | "SUSPENDED" | "ARCHIVED" } | { ruleIds: string[] }) => {
      if ("ruleIds" in change) {
        await unwrap(api.POST("/v1/programs/{program_id}/rules:reorder", { params: { path }, body: { rule_ids: change.ruleIds } }));
        return;
      }
      const where = { params: { path: { ...path, rule_id: change.rule.rule_id } } };
      if (change.to === "ARCHIVED") await unwrap(api.DELETE("/v1/programs/{program_id}/rules/{rule_id}", where));
      else await unwrap(api.PATCH("/v1/programs/{program_id}/rules/{rule_id}", { ...where, body: { status: change.to } }));
    },
    onSettled: () => {
      void refresh();
      void queries.invalidateQueries({ queryKey: ["rule-versions", programId] });
    },
  });

  const list = rules.data ?? [];
  const live = list.filter((r) => r.status !== "ARCHIVED");
  const listed = list.find((r) => r.rule_id === ruleId);
  // An archived rule is not listed; its page still shows it and its versions.
  const unlisted = useQuery({
    queryKey: ["rule", programId, ruleId],
    queryFn: () => unwrap(api.GET("/v1/programs/{program_id}/rules/{rule_id}", { params: { path: { ...path, rule_id: ruleId ?? "" } } })),
    enabled: Boolean(ruleId && rules.data && !listed),
  });
  const selected = listed ?? unlisted.data;

  /** Moves a rule one place up or down: the whole order is sent at once (rules:reorder). */
  function move(rule: Rule, by: -1 | 1) {
    const order = [...live];
    const i = order.indexOf(rule), j = i + by;
    if (j < 0 || j >= order.length) return;
    [order[i], order[j]] = [order[j], order[i]];
    act.mutate({ ruleIds: order.map((r) => r.rule_id) });
  }

  return (
    <>
      <h1>Rule builder</h1>
      <section className="panel" aria-labelledby="rules-heading">
        <h2 id="rules-heading">Rules in evaluation order</h2>
        {rules.isPending ? <p className="muted" role="status">Loading…</p> : null}
        {rules.error ? <p className="form-error" role="alert">{rules.error.message}</p> : null}
        {act.error ? <p className="form-error" role="alert">{act.error.message}</p> : null}
        {rules.data && list.length === 0 ? <p className="muted">No rule yet: write the first one below.</p> : null}
        {list.length ? (
          <div className="table-wrap">
            <table>
              <thead><tr><th>#</th><th>Rule</th><th className="hide-narrow">Event type</th><th>Status</th><th>v</th><th>Actions</th></tr></thead>
              <tbody>
                {list.map((r) => (
                  <tr key={r.rule_id} className={r.rule_id === ruleId ? "selected" : undefined}>
                    <td>{r.order}</td>
                    <td><Link to={`/programs/${programId}/rules/${r.rule_id}`}>{r.name}</Link></td>
                    <td className="hide-narrow">{r.event_type || "(any)"}</td>
                    <td><span className={`status status-${r.status}`}>{r.status}</span></td>
                    <td>{r.version}</td>
                    <td className="actions">
                      {r.status !== "ARCHIVED" ? (
                        <>
                          <button type="button" className="secondary" aria-label={`Move ${r.name} up`} disabled={Boolean(cannotWrite) || act.isPending || live[0] === r} title={cannotWrite || undefined} onClick={() => move(r, -1)}>↑</button>
                          <button type="button" className="secondary" aria-label={`Move ${r.name} down`} disabled={Boolean(cannotWrite) || act.isPending || live[live.length - 1] === r} title={cannotWrite || undefined} onClick={() => move(r, 1)}>↓</button>
                          <button type="button" className="secondary" disabled={Boolean(cannotWrite) || act.isPending} title={cannotWrite || undefined}
                                  onClick={() => act.mutate({ rule: r, to: r.status === "ACTIVE" ? "SUSPENDED" : "ACTIVE" })}>
                            {r.status === "ACTIVE" ? "Suspend" : "Activate"}
                          </button>
                          <button type="button" className="danger" disabled={Boolean(cannotWrite) || act.isPending} title={cannotWrite || undefined}
                                  onClick={() => window.confirm(`Archive the rule “${r.name}”? It stops applying; its history stays.`) && act.mutate({ rule: r, to: "ARCHIVED" })}>
                            Archive
                          </button>
                        </>
                      ) : <span className="muted">archived</span>}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : null}
        {ruleId ? <p><Link to={`/programs/${programId}/rules`}>+ New rule</Link></p> : null}
        {cannotWrite ? <p className="unavailable">{cannotWrite} Editing is unavailable.</p> : null}
      </section>
      <div className="split">
        <section className="panel" aria-labelledby="editor-heading">
          <h2 id="editor-heading">{selected ? `Edit “${selected.name}” (v${selected.version})` : "New rule"}</h2>
          {ruleId && !selected ? (unlisted.error ? <p className="form-error" role="alert">{unlisted.error.message}</p> : <p className="muted" role="status">Loading…</p>)
            : selected?.status === "ARCHIVED" ? <p className="muted">This rule is archived: it no longer applies. Its versions are below.</p> : (
            <RuleEditor key={`${ruleId ?? "new"}-${selected?.version ?? 0}`} programId={programId}
                        initial={ruleDraft(selected, ((live[live.length - 1]?.order ?? 0) + 10))}
                        submitLabel={selected ? "Save as a new version" : "Create rule"}
                        busy={save.isPending} saveError={save.error} disabled={cannotWrite}
                        onSubmit={(d) => save.mutate(d)} onChange={setEditing} />
          )}
          {save.isSuccess && !save.isPending ? <p className="ok" role="status">Saved version {save.data.version}.</p> : null}
        </section>
        <SimulatePanel programId={programId} draft={editing} />
      </div>
      {selected ? <RuleVersions programId={programId} ruleId={selected.rule_id} /> : null}
    </>
  );
}
