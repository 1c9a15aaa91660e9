/** Reconnect delays: exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"). */
export interface BackoffOptions {
  /** Lower bound of the exponential cap, ms (the first attempt waits up to this). */
  minReconnectDelay: number;
  /** Upper bound of any delay, ms. */
  maxReconnectDelay: number;
}

/**
 * The cap for attempt `n` (0-based): `min(max, min * 2^n)`. The delay is uniform in `[0, cap]`
 * ("full jitter"), so a crowd of clients that lost the same server spreads out instead of
 * coming back at once.
 */
export function backoffCap(attempt: number, o: BackoffOptions): number {
  const exp = o.minReconnectDelay * 2 ** Math.min(Math.max(0, attempt), 52);
  return Math.min(o.maxReconnectDelay, exp);
}

/** The delay before reconnect attempt `attempt` (0-based); `random` returns a number in [0, 1). */
export function backoffDelay(attempt: number, o: BackoffOptions, random: () => number = Math.random): number {
  return Math.floor(random() * (backoffCap(attempt, o) + 1));
}
