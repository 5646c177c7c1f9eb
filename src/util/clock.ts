// The time fleet rules read (action expiry, long-poll budget, last_checkin): injectable so those rules
// can be tested by moving a clock instead of sleeping.
export interface Clock {
  /** Milliseconds since the epoch, as Date.now(). */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
