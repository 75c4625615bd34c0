// Every page of the console, each at a URL of its own. Program pages live under
// /programs/:programId/; the nav shows them once a program is chosen.
import type { ReactElement } from "react";
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
import { WebhooksPage } from "./pages/webhooks/WebhooksPage";
import { EndpointPage } from "./pages/webhooks/EndpointPage";

export interface PageDef {
  /** Path relative to the console root, or to /programs/:programId for program pages. */
  path: string;
  /** Label in the nav; pages without one (details) are reached by links. */
  label?: string;
  element: ReactElement;
}

export const globalPages: PageDef[] = [
  { path: "programs", label: "Programs", element: <ProgramsPage /> },
  { path: "activity", label: "Activity", element: <ActivityPage /> },
  { path: "activity/:eventId", element: <EventPage /> },
  { path: "event-types", label: "CDP event types", element: <CdpEventTypesPage /> },
  { path: "webhooks", label: "Webhooks", element: <WebhooksPage /> },
  { path: "webhooks/:endpointId", element: <EndpointPage /> },
];

export const programPages: PageDef[] = [
  { path: "", label: "Settings", element: <ProgramPage /> },
  { path: "rules", label: "Rules", element: <RulesPage /> },
  { path: "rules/:ruleId", element: <RulesPage /> },
  { path: "event-types", label: "Event types", element: <ProgramEventTypesPage /> },
  { path: "participants", label: "Participants", element: <ParticipantsPage /> },
  { path: "participants/:participantId", element: <ParticipantPage /> },
  { path: "bulk", label: "Bulk upload", element: <BulkPage /> },
  { path: "analytics", label: "Analytics", element: <AnalyticsPage /> },
];
