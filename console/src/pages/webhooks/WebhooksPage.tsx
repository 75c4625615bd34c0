// Page 8: webhook endpoints: the list and a new one (its secret shown once).
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link } from "react-router-dom";
import { api, unwrap } from "../../api/client";
import { when } from "../../lib/ids";
import { useRouteUnavailable } from "../../shell/scopes";
import { EndpointForm, eventsOf, SecretOnce } from "./EndpointForm";

export function WebhooksPage() {
  const queries = useQueryClient();
  const [secret, setSecret] = useState<{ id: string; secret: string } | null>(null);
  const [formKey, setFormKey] = useState(0);
  const cannotWrite = useRouteUnavailable("POST /v1/webhook-endpoints");
  const endpoints = useQuery({
    queryKey: ["webhook-endpoints"],
    queryFn: () => unwrap(api.GET("/v1/webhook-endpoints")),
  });
  const create = useMutation({
    mutationFn: (d: { url: string; events: string; description: string }) => unwrap(api.POST("/v1/webhook-endpoints", {
      body: { url: d.url.trim(), enabled_events: eventsOf(d.events), description: d.description },
    })),
    onSuccess: (endpoint) => {
      setSecret({ id: endpoint.endpoint_id, secret: endpoint.secret ?? "" });
      setFormKey((k) => k + 1);
      void queries.invalidateQueries({ queryKey: ["webhook-endpoints"] });
    },
  });
  const list = endpoints.data?.endpoints ?? [];
  return (
    <>
      <h1>Webhooks</h1>
      {secret ? (
        <>
          <SecretOnce secret={secret.secret} onDone={() => setSecret(null)} />
          <p><Link to={`/webhooks/${secret.id}`}>Open the new endpoint</Link></p>
        </>
      ) : null}
      <section className="panel" aria-labelledby="endpoints">
        <h2 id="endpoints">Endpoints</h2>
        {endpoints.isPending ? <p className="muted" role="status">Loading…</p> : null}
        {endpoints.error ? <p className="form-error" role="alert">{(endpoints.error as Error).message}</p> : null}
        {endpoints.data && list.length === 0 ? <p className="muted">No endpoint yet: add one below.</p> : null}
        {list.length ? (
          <div className="table-wrap">
            <table>
              <thead><tr><th>URL</th><th>Events</th><th>Status</th><th>Failing since</th><th>Created</th></tr></thead>
              <tbody>
                {list.map((e) => (
                  <tr key={e.endpoint_id}>
                    <td><Link to={`/webhooks/${e.endpoint_id}`}>{e.url}</Link></td>
                    <td>{e.enabled_events.join(", ")}</td>
                    <td><span className={`status status-${e.status}`}>{e.status}</span></td>
                    <td>{when(e.failing_since)}</td>
                    <td>{when(e.created_at)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : null}
      </section>
      <section className="panel" aria-labelledby="new-endpoint">
        <h2 id="new-endpoint">New endpoint</h2>
        <EndpointForm key={formKey} initial={{ url: "", events: "", description: "" }} submitLabel="Add endpoint"
                      busy={create.isPending} error={create.error} disabled={cannotWrite} onSubmit={(d) => create.mutate(d)} />
      </section>
    </>
  );
}
