// Fleet Server's own health, as /api/status shows it and (in agent mode) the control protocol reports.
import { jsonEqual } from '../util/json-equal';

export type UnitState = 'STARTING' | 'CONFIGURING' | 'HEALTHY' | 'DEGRADED' | 'FAILED' | 'STOPPING' | 'STOPPED';

export interface HealthStatus {
  state: UnitState;
  message: string;
  payload?: Record<string, unknown>;
}

/**
 * The state the monitors set, with a store write fault laid over it: while the store cannot write
 * (disk full, I/O error), a running server is DEGRADED with the fault as its message, whatever the
 * periodic checks find, until the store reports a write that succeeded.
 */
export class SelfMonitor {
  private base: HealthStatus = { state: 'STARTING', message: 'Starting' };
  private fault: string | undefined;
  private status: HealthStatus = this.base;
  private readonly listeners = new Set<(s: HealthStatus) => void>();

  get current(): HealthStatus {
    return this.status;
  }

  set(state: UnitState, message: string, payload?: Record<string, unknown>): void {
    this.base = payload ? { state, message, payload } : { state, message };
    this.publish();
  }

  /** A store write fault (its cause), or undefined when writes succeed again. */
  setWriteFault(fault: string | undefined): void {
    this.fault = fault;
    this.publish();
  }

  private publish(): void {
    const b = this.base;
    const running = b.state === 'HEALTHY' || b.state === 'DEGRADED';
    const next: HealthStatus = this.fault !== undefined && running
      ? { ...b, state: 'DEGRADED', message: `Store write failed: ${this.fault}` }
      : b;
    const prev = this.status;
    if (prev.state === next.state && prev.message === next.message && jsonEqual(prev.payload, next.payload)) return;
    this.status = next;
    for (const fn of this.listeners) fn(this.status);
  }

  /** fn hears every change; returns the unsubscribe. */
  onChange(fn: (s: HealthStatus) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}
