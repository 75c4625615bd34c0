// Query keys of a participant's points bank, so every change refreshes all that it moves.
import { useQueryClient } from "@tanstack/react-query";

const BANK_LISTS = ["balance", "transactions", "lots", "redemptions", "examine"];

/** Re-reads the balance, transactions, lots, redemptions and examine list of a participant. */
export function useRefreshBank(programId: string, participantId: string): () => void {
  const queries = useQueryClient();
  return () => {
    for (const list of BANK_LISTS) void queries.invalidateQueries({ queryKey: [list, programId, participantId] });
  };
}
