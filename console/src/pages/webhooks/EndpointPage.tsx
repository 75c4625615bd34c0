// Page 8: one webhook endpoint: edit, disable or enable, rotate the secret, recover
// failed deliveries since a time, delete; its deliveries with their attempts and retry.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { useNavigate, useParams } from "react-router-dom";
import { api, unwrap } from "../../api/client";
import { fieldErrors } from "../../api/errors";
import type { components } from "../../api/schema";
import { when } from "../../lib/ids";
import { Field, FormErrors } from "../../shell/forms";
import { ListState, LoadMore, useCursorList } from "../../shell/paging";
import { useRouteUnavailable } from "../../shell/scopes";
import { EndpointForm, eventsOf, SecretOnce } from "./EndpointForm";

type Delivery = components["schemas"]["WebhookDelivery"];

export function EndpointPage() {
  const { endpointId = "" } = useParams();
  const navigate = useNavigate();
  const queries = useQueryClient();
  const cannotWrite = useRouteUnavailable("PATCH /v1/webhook-endpoints/{endpoint_id}");
  const [secret, setSecret] = useState("");
  const [since, setSince] = useState("");
  const [recovered, setRecovered] = useState("");
  const [confirmDelete, setConfirmDelete] = useState(false);
  const path = { params: { path: { endpoint_id: endpointId } } };
  const endpoint = useQuery({
    queryKey: ["webhook-endpoint", endpointId],
    queryFn: () => unwrap(api.GET("/v1/webhook-endpoints/{endpoint_id}", path)),
  });
  const refresh = () => {
    void queries.invalidateQueries({ queryKey: ["webhook-endpoint", endpointId] });
    void queries.invalidateQueries({ queryKey: ["webhook-endpoints"] });
    void queries.invalidateQueries({ queryKey: ["deliveries", endpointId] });
  };
  const update = useMutation({
    mutationFn: (body: { url?: string; enabled_events?: string[]; description?: string; status?: "ENABLED" | "DISABLED" }) =>
      unwrap(api.PATCH("/v1/webhook-endpoints/{endpoint_id}", { ...path, body: body as never })),
    onSuccess: refresh,
  });
  const rotate = useMutation({
    mutationFn: () => unwrap(api.POST("/v1/webhook-endpoints/{endpoint_id}:rotate-secret", { ...path, body: {} as never })),
    onSuccess: (e) => { setSecret(e.secret ?? ""); refresh(); },
  });
  const recover = useMutation({
    mutationFn: () => unwrap(api.POST("/v1/webhook-endpoints/{endpoint_id}:recover", {
      ...path, body: { since: since ? new Date(since).toISOString() : "" } as never,
    })),
    onSuccess: (r) => { setRecovered(`${r.recovered_count} deliveries re-queued.`); refresh(); },
  });
  const remove = useMutation({
    mutationFn: () => unwrap(api.DELETE("/v1/webhook-endpoints/{endpoint_id}", path)),
    onSuccess: () => { void queries.invalidateQueries({ queryKey: ["webhook-endpoints"] }); navigate("/webhooks"); },
  });
  const deliveries = useCursorList<Delivery>(["deliveries", endpointId], async (token) => {
    const page = await unwrap(api.GET("/v1/webhook-endpoints/{endpoint_id}/deliveries", {
      params: { path: { endpoint_id: endpointId }, query: { page_size: 50, ...(token ? { page_token: token } : {}) } },
    }));
    return { items: page.deliveries, next: page.next_page_token };
  }, { refetchInterval: 3000 });
  const recoverErrors = fieldErrors(recover.error, ["since"]);
  const e = endpoint.data;
  return (
    <>
      <h1>Webhook endpoint</h1>
      {secret ? <SecretOnce secret={secret} onDone={() => setSecret("")} /> : null}
      {endpoint.isPending ? <p className="muted" role="status">Loading…</p> : null}
      {endpoint.error ? <p className="form-error" role="alert">{(endpoint.error as Error).message}</p> : null}
      {e ? (
        <>
          <section className="panel" aria-labelledby="endpoint">
            <h2 id="endpoint">{e.url}</h2>
            <dl className="facts">
              <dt>Status</dt><dd><span className={`status status-${e.status}`}>{e.status}</span> {e.disabled_reason}</dd>
              <dt>Events</dt><dd>{e.enabled_events.join(", ")}</dd>
              <dt>Failing since</dt><dd>{when(e.failing_since)}</dd>
              <dt>Previous secret signs until</dt><dd>{when(e.previous_secret_expires_at)}</dd>
            </dl>
            <div className="actions">
              <button type="button" className="secondary" disabled={update.isPending || Boolean(cannotWrite)}
                      onClick={() => update.mutate({ status: e.status === "DISABLED" ? "ENABLED" : "DISABLED" })}>
                {e.status === "DISABLED" ? "Enable" : "Disable"}
              </button>
              <button type="button" className="secondary" disabled={rotate.isPending || Boolean(cannotWrite)} onClick={() => rotate.mutate()}>
                Rotate secret
              </button>
              <button type="button" className="danger" disabled={Boolean(cannotWrite)} onClick={() => setConfirmDelete(true)}>Delete</button>
            </div>
            {cannotWrite ? <p className="unavailable">{cannotWrite}</p> : null}
            <FormErrors errors={fieldErrors(rotate.error ?? remove.error, [])} />
            {confirmDelete ? (
              <div className="panel warn" role="alertdialog" aria-labelledby="delete-confirm">
                <p id="delete-confirm">Delete the endpoint <strong>{e.url}</strong>? Nothing more is delivered to it.</p>
                <div className="actions">
                  <button type="button" className="danger" disabled={remove.isPending} onClick={() => remove.mutate()}>Yes, delete</button>
                  <button type="button" className="secondary" onClick={() => setConfirmDelete(false)}>Cancel</button>
                </div>
              </div>
            ) : null}
          </section>
          <section className="panel" aria-labelledby="edit">
            <h2 id="edit">Edit</h2>
            <EndpointForm key={e.updated_at ?? ""} submitLabel="Save" busy={update.isPending} error={update.error} disabled={cannotWrite}
                          initial={{ url: e.url, events: e.enabled_events.join(", "), description: e.description }}
                          onSubmit={(d) => update.mutate({ url: d.url.trim(), enabled_events: eventsOf(d.events), description: d.description })} />
          </section>
          <section className="panel" aria-labelledby="recover">
            <h2 id="recover">Recover failed deliveries</h2>
            <form className="form" onSubmit={(ev) => { ev.preventDefault(); setRecovered(""); recover.mutate(); }}>
              <FormErrors errors={recoverErrors} />
              <div className="row">
                <Field label="Since (your local time)" error={recoverErrors.since}>
                  {(p) => <input {...p} type="datetime-local" value={since} onChange={(ev) => setSince(ev.target.value)} />}
                </Field>
                <div className="actions">
                  <button type="submit" disabled={recover.isPending || Boolean(cannotWrite)}>Re-queue failed deliveries</button>
                </div>
              </div>
              {recovered ? <p className="ok" role="status">{recovered}</p> : null}
            </form>
          </section>
        </>
      ) : null}
      <section className="panel" aria-labelledby="deliveries">
        <h2 id="deliveries">Deliveries</h2>
        <ListState list={deliveries} empty="No delivery yet." />
        {deliveries.items.length ? (
          <div className="table-wrap">
            <table data-testid="deliveries">
              <thead><tr><th>Created</th><th>Type</th><th>Status</th><th>Attempts</th><th>Last answer</th><th /></tr></thead>
              <tbody>
                {deliveries.items.map((d) => <DeliveryRow key={d.delivery_id} delivery={d} disabled={cannotWrite} onRetried={refresh} />)}
              </tbody>
            </table>
          </div>
        ) : null}
        <LoadMore list={deliveries} />
      </section>
    </>
  );
}

function DeliveryRow({ delivery, disabled, onRetried }: { delivery: Delivery; disabled: string; onRetried: () => void }) {
  const [open, setOpen] = useState(false);
  const path = { params: { path: { delivery_id: delivery.delivery_id } } };
  const attempts = useQuery({
    queryKey: ["attempts", delivery.delivery_id, delivery.attempts],
    queryFn: () => unwrap(api.GET("/v1/webhook-deliveries/{delivery_id}/attempts", path)),
    enabled: open,
  });
  const retry = useMutation({
    mutationFn: () => unwrap(api.POST("/v1/webhook-deliveries/{delivery_id}/retry", { ...path, body: {} as never })),
    onSuccess: onRetried,
  });
  return (
    <>
      <tr>
        <td>{when(delivery.created_at)}</td>
        <td>{delivery.type}</td>
        <td><span className={`status status-${delivery.status}`}>{delivery.status}</span></td>
        <td>{delivery.attempts}</td>
        <td>{delivery.last_status_code || "—"} {delivery.last_error}</td>
        <td className="actions">
          <button type="button" className="link" aria-expanded={open} onClick={() => setOpen(!open)}>
            {open ? "Hide attempts" : "Attempts"}
          </button>
          {delivery.status === "FAILED" ? (
            <button type="button" className="secondary" disabled={retry.isPending || Boolean(disabled)} onClick={() => retry.mutate()}>Retry</button>
          ) : null}
        </td>
      </tr>
      {open ? (
        <tr>
          <td colSpan={6}>
            {attempts.isPending ? <p className="muted" role="status">Loading…</p> : null}
            {retry.error ? <p className="form-error" role="alert">{(retry.error as Error).message}</p> : null}
            {attempts.data ? (
              <table>
                <thead><tr><th>#</th><th>Started</th><th>Status code</th><th>Latency</th><th>Error</th><th>Response</th></tr></thead>
                <tbody>
                  {attempts.data.attempts.map((a) => (
                    <tr key={a.attempt}>
                      <td>{a.attempt}</td><td>{when(a.started_at)}</td><td>{a.status_code || "—"}</td>
                      <td>{a.latency_ms} ms</td><td>{a.error || "—"}</td><td><code>{a.response_excerpt}</code></td>
                    </tr>
                  ))}
                </tbody>
              </table>
            ) : null}
          </td>
        </tr>
      ) : null}
    </>
  );
}
