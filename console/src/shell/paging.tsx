import { useInfiniteQuery, type QueryKey } from "@tanstack/react-query";

/** A list read one cursor page at a time (never one big fetch), with "Load more". */
export function useCursorList<T>(key: QueryKey, page: (token: string) => Promise<{ items: T[]; next: string }>,
                                 options: { enabled?: boolean; refetchInterval?: number | false } = {}) {
  const query = useInfiniteQuery({
    queryKey: key,
    queryFn: ({ pageParam }) => page(pageParam),
    initialPageParam: "",
    getNextPageParam: (last) => last.next || undefined,
    enabled: options.enabled,
    refetchInterval: options.refetchInterval,
  });
  const items = query.data?.pages.flatMap((p) => p.items) ?? [];
  return { ...query, items };
}

export function LoadMore({ list }: { list: { hasNextPage: boolean; isFetchingNextPage: boolean; fetchNextPage: () => unknown } }) {
  if (!list.hasNextPage) return null;
  return (
    <button type="button" className="secondary" disabled={list.isFetchingNextPage}
            onClick={() => list.fetchNextPage()}>
      {list.isFetchingNextPage ? "Loading…" : "Load more"}
    </button>
  );
}

/** Loading, error and empty states of a list, so no page is ever blank. */
export function ListState({ list, empty }: { list: { isPending: boolean; error: unknown; items: unknown[] }; empty: string }) {
  if (list.isPending) return <p className="muted" role="status">Loading…</p>;
  if (list.error) return <p className="form-error" role="alert">{list.error instanceof Error ? list.error.message : String(list.error)}</p>;
  if (list.items.length === 0) return <p className="muted">{empty}</p>;
  return null;
}
