// Every page of the console, each at a URL of its own. Program pages live under
// /programs/:programId/; the nav shows them once a program is chosen.
import type { ReactElement } from "react";
import type { RouteName } from "./shell/scopes";
import { ProgramsPage } from "./pages/programs/ProgramsPage";
import { ProgramPage } from "./pages/programs/ProgramPage";
import { RulesPage } from "./pages/rules/RulesPage";
import { CdpEventTypesPage, ProgramEventTypesPage } from "./pages/eventtypes/EventTypesPages";
import { ActivityPage } from "./pages/activity/ActivityPage";
import { EventPage } from "./pages/activity/EventPage";
import { ParticipantsPage } from "./pages/participants/ParticipantsPage";
import { ParticipantPage } from "./pages/participants/ParticipantPage";
import { BulkPage } from "./pages/bulk/BulkPage";
import { AnalyticsPage } from "./pages/analytics/AnalyticsPage";
import { RewardsPage } from "./pages/rewards/RewardsPage";
import { WebhooksPage } from "./pages/webhooks/WebhooksPage";
import { EndpointPage } from "./pages/webhooks/EndpointPage";

export interface PageDef {
  /** Path relative to the console root, or to /programs/:programId for program pages. */
  path: string;
  /** Label in the nav; pages without one (details) are reached by links. */
  label?: string;
  element: ReactElement;
  /** The route the page reads; when the key may not call it the nav marks the page unavailable. */
  reads?: RouteName;
}

export const globalPages: PageDef[] = [
  { path: "programs", label: "Programs", element: <ProgramsPage />, reads: "GET /v1/programs" },
  { path: "activity", label: "Activity", element: <ActivityPage />, reads: "GET /v1/events" },
  { path: "activity/:eventId", element: <EventPage /> },
  { path: "event-types", label: "CDP event types", element: <CdpEventTypesPage />, reads: "GET /v1/cdp/event-types" },
  { path: "webhooks", label: "Webhooks", element: <WebhooksPage />, reads: "GET /v1/webhook-endpoints" },
  { path: "webhooks/:endpointId", element: <EndpointPage /> },
];

export const programPages: PageDef[] = [
  { path: "", label: "Settings", element: <ProgramPage />, reads: "GET /v1/programs/{program_id}" },
  { path: "rules", label: "Rules", element: <RulesPage />, reads: "GET /v1/programs/{program_id}/rules" },
  { path: "rules/:ruleId", element: <RulesPage /> },
  { path: "event-types", label: "Event types", element: <ProgramEventTypesPage />, reads: "GET /v1/programs/{program_id}/event-types" },
  { path: "participants", label: "Participants", element: <ParticipantsPage />, reads: "GET /v1/participants" },
  { path: "participants/:participantId", element: <ParticipantPage /> },
  { path: "rewards", label: "Rewards", element: <RewardsPage />, reads: "GET /v1/programs/{program_id}/rewards" },
  { path: "bulk", label: "Bulk upload", element: <BulkPage />, reads: "POST /v1/events/batch" },
  { path: "analytics", label: "Analytics", element: <AnalyticsPage />, reads: "GET /v1/programs/{program_id}/analytics" },
];
