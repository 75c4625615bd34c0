import { dismissNotice, useNotice } from "../api/notices";

/** The banner of the last server-side failure (5xx or lost connection), with its request id. */
export function Banner() {
  const notice = useNotice();
  if (!notice) return null;
  return (
    <div role="alert" className="banner" data-testid="failure-banner">
      <span>
        {notice.message}
        {notice.requestId ? <> (request id <code>{notice.requestId}</code>)</> : null}
      </span>
      <button type="button" onClick={dismissNotice} aria-label="Dismiss">×</button>
    </div>
  );
}
