// A participant's points bank in the console: the lists a change moves, so that all of them
// are read again, and when a form may take a new idempotency key.
import { useQueryClient } from "@tanstack/react-query";
import { ApiError } from "../../api/errors";

/** First parts of the query keys of a participant's bank lists: [list, programId, participantId, …]. */
export const BANK_LISTS = ["balance", "transactions", "lots", "redemptions", "examine"];

/** Re-reads the balance, transactions, lots, redemptions and examine list of a participant. */
export function useRefreshBank(programId: string, participantId: string): () => void {
  const queries = useQueryClient();
  return () => {
    for (const list of BANK_LISTS) void queries.invalidateQueries({ queryKey: [list, programId, participantId] });
  };
}

/** True when the API answered a request with a refusal (4xx): nothing was done under its
 * idempotency key, so the form may take a new one; after a 5xx or a lost answer it keeps the
 * key, so that a retry cannot do the thing twice. */
export function refusedByApi(error: unknown): boolean {
  return error instanceof ApiError && !error.isServerSide;
}
