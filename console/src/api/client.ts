// The typed client of the public REST API (types generated from the served /openapi.json).
import createClient from "openapi-fetch";
import type { paths } from "./schema";
import { ApiError, apiErrorOf, networkError, parseRetryAfter } from "./errors";
import { reportFailure } from "./notices";
import { getApiKey, signOut } from "./session";

/** How many times a rate-limited call waits for Retry-After before giving the 429 up. */
const RATE_LIMIT_WAITS = 5;

function sleep(seconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
}

/** fetch with the session's key, waiting out 429s as Retry-After asks. */
export async function keyedFetch(request: Request): Promise<Response> {
  const key = getApiKey();
  for (let attempt = 0; ; attempt++) {
    const headers = new Headers(request.headers);
    // A key given with the call (sign-in checks one before keeping it) wins over the session's.
    if (key && !headers.has("X-API-Key")) headers.set("X-API-Key", key);
    let response: Response;
    try {
      response = await fetch(new Request(request.clone(), { headers }));
    } catch (cause) {
      throw networkError(cause);
    }
    if (response.status !== 429 || attempt >= RATE_LIMIT_WAITS) return response;
    await sleep(parseRetryAfter(response.headers.get("retry-after")) ?? 1);
  }
}

export const api = createClient<paths>({
  baseUrl: typeof window === "undefined" ? "" : window.location.origin,
  fetch: keyedFetch,
});

interface Answer<T> {
  data?: T;
  error?: unknown;
  response: Response;
}

/** The data of a call, or an ApiError thrown: a 401 signs out, a 5xx/network shows the banner. */
export async function unwrap<T>(call: Promise<Answer<T>>): Promise<T> {
  let answer: Answer<T>;
  try {
    answer = await call;
  } catch (cause) {
    const error = cause instanceof ApiError ? cause : networkError(cause);
    reportFailure(error);
    throw error;
  }
  if (answer.response.ok) return answer.data as T;
  const error = apiErrorOf(answer.response, answer.error);
  if (error.status === 401) signOut(`The API refused the key: ${error.message}`);
  else if (error.isServerSide) reportFailure(error);
  throw error;
}
