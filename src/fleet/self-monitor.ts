// Fleet Server's own health, as /api/status shows it and (in agent mode) the control protocol reports.
export type UnitState = 'STARTING' | 'CONFIGURING' | 'HEALTHY' | 'DEGRADED' | 'FAILED' | 'STOPPING' | 'STOPPED';

export interface HealthStatus {
  state: UnitState;
  message: string;
  payload?: Record<string, unknown>;
}

export class SelfMonitor {
  private status: HealthStatus = { state: 'STARTING', message: 'Starting' };
  private readonly listeners = new Set<(s: HealthStatus) => void>();

  get current(): HealthStatus {
    return this.status;
  }

  set(state: UnitState, message: string, payload?: Record<string, unknown>): void {
    const prev = this.status;
    if (prev.state === state && prev.message === message && JSON.stringify(prev.payload) === JSON.stringify(payload)) return;
    this.status = payload ? { state, message, payload } : { state, message };
    for (const fn of this.listeners) fn(this.status);
  }

  /** fn hears every change; returns the unsubscribe. */
  onChange(fn: (s: HealthStatus) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}
