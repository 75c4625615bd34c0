import { useMemo } from "react";
import { useParams } from "react-router-dom";
import { api, unwrap } from "../../api/client";
import type { components } from "../../api/schema";
import { EventTypeAdmin, type EventTypeDraft, type EventTypeStore } from "./EventTypeAdmin";

type Schemas = components["schemas"];
const PROGRAM_KINDS: readonly Schemas["PropertyType"][] = ["STRING", "NUMBER", "BOOLEAN", "OBJECT", "ARRAY"];
const CDP_KINDS: readonly Schemas["CdpPropertyType"][] = ["STRING", "NUMBER", "INTEGER", "BOOLEAN", "OBJECT", "ARRAY", "TIMESTAMP"];

function properties<K extends string>(d: EventTypeDraft) {
  return d.properties.map((p) => ({ name: p.name, type: p.type as K, required: p.required }));
}

function draftOf(t: { name?: string; description?: string; allow_unknown_properties?: boolean;
                      properties?: { name?: string; type?: string; required?: boolean }[] }): EventTypeDraft {
  return {
    name: t.name ?? "", description: t.description ?? "", allow_unknown_properties: Boolean(t.allow_unknown_properties),
    properties: (t.properties ?? []).map((p) => ({ name: p.name ?? "", type: p.type ?? "STRING", required: Boolean(p.required) })),
  };
}

/** A program's event types (checked under its REGISTERED event-type policy). */
export function ProgramEventTypesPage() {
  const programId = useParams().programId ?? "";
  const store = useMemo((): EventTypeStore => {
    const path = { program_id: programId };
    return {
      key: ["event-types", programId], writeRoute: "POST /v1/programs/{program_id}/event-types", kinds: PROGRAM_KINDS, description: true, allowUnknown: false,
      list: async () => (await unwrap(api.GET("/v1/programs/{program_id}/event-types", { params: { path } }))).event_types.map(draftOf),
      create: (d) => unwrap(api.POST("/v1/programs/{program_id}/event-types", {
        params: { path }, body: { name: d.name, description: d.description, properties: properties<Schemas["PropertyType"]>(d) },
      })),
      update: (d) => unwrap(api.PATCH("/v1/programs/{program_id}/event-types/{name}", {
        params: { path: { ...path, name: d.name } },
        body: { description: d.description, properties: properties<Schemas["PropertyType"]>(d), clear_properties: d.properties.length === 0 },
      })),
      remove: (name) => unwrap(api.DELETE("/v1/programs/{program_id}/event-types/{name}", { params: { path: { ...path, name } } })),
    };
  }, [programId]);
  return (
    <>
      <h1>Event types</h1>
      <p className="muted">The program's event types and their properties. Under the program's “registered types only”
        policy, an event must be of one of these types and carry its required properties.</p>
      <EventTypeAdmin store={store} />
    </>
  );
}

/** The CDP event-type registry of the tenant (typed properties of /v1/cdp/events). */
export function CdpEventTypesPage() {
  const store = useMemo((): EventTypeStore => ({
    key: ["cdp-event-types"], writeRoute: "POST /v1/cdp/event-types", kinds: CDP_KINDS, description: false, allowUnknown: true,
    list: async () => (await unwrap(api.GET("/v1/cdp/event-types"))).event_types.map(draftOf),
    create: (d) => unwrap(api.POST("/v1/cdp/event-types", {
      body: { name: d.name, properties: properties<Schemas["CdpPropertyType"]>(d), allow_unknown_properties: d.allow_unknown_properties },
    })),
    update: (d) => unwrap(api.PATCH("/v1/cdp/event-types/{name}", {
      params: { path: { name: d.name } },
      body: { properties: properties<Schemas["CdpPropertyType"]>(d), clear_properties: d.properties.length === 0,
              allow_unknown_properties: d.allow_unknown_properties },
    })),
    remove: (name) => unwrap(api.DELETE("/v1/cdp/event-types/{name}", { params: { path: { name } } })),
  }), []);
  return (
    <>
      <h1>CDP event types</h1>
      <p className="muted">The registry of event types that <code>POST /v1/cdp/events</code> accepts, with their typed properties.</p>
      <EventTypeAdmin store={store} />
    </>
  );
}
