// The component's view of its units, keyed by (id, type) as the agent keys them: what the agent expects
// (state, config revision, log level) and what this component reports back.
import { proto } from './generated/control';

export type UnitKey = string;
export const unitKey = (id: string, type: proto.UnitType): UnitKey => `${type}/${id}`;

export interface Unit {
  readonly id: string;
  readonly type: proto.UnitType;
  expectedState: proto.State;
  configIdx: number;
  config: proto.IUnitExpectedConfig | undefined;
  logLevel: proto.UnitLogLevel;
  observed: { state: proto.State; message: string; payload?: Record<string, unknown> };
}

export interface UnitChange {
  unit: Unit;
  /** For a modified unit: what changed. */
  config?: boolean;
  state?: boolean;
  logLevel?: boolean;
}

export interface UnitChanges {
  added: Unit[];
  modified: UnitChange[];
  removed: Unit[];
}

/**
 * Reconciles the expected unit list into `units`: new units start as STARTING "Starting" with the
 * expected config and idx; a changed idx adopts the config sent with it; units no longer expected go.
 */
export function reconcile(units: Map<UnitKey, Unit>, expected: proto.IUnitExpected[]): UnitChanges {
  const out: UnitChanges = { added: [], modified: [], removed: [] };
  const seen = new Set<UnitKey>();
  for (const e of expected) {
    const type = e.type ?? proto.UnitType.INPUT;
    const key = unitKey(e.id ?? '', type);
    seen.add(key);
    const idx = Number(e.configStateIdx ?? 0);
    const cur = units.get(key);
    if (!cur) {
      const unit: Unit = {
        id: e.id ?? '', type, expectedState: e.state ?? proto.State.STARTING, configIdx: idx, config: e.config ?? undefined,
        logLevel: e.logLevel ?? proto.UnitLogLevel.ERROR, observed: { state: proto.State.STARTING, message: 'Starting' },
      };
      units.set(key, unit);
      out.added.push(unit);
      continue;
    }
    const change: UnitChange = { unit: cur };
    if (idx !== cur.configIdx) {
      cur.configIdx = idx;
      if (e.config) cur.config = e.config;
      change.config = true;
    }
    const state = e.state ?? proto.State.STARTING;
    if (state !== cur.expectedState) {
      cur.expectedState = state;
      change.state = true;
    }
    const level = e.logLevel ?? proto.UnitLogLevel.ERROR;
    if (level !== cur.logLevel) {
      cur.logLevel = level;
      change.logLevel = true;
    }
    if (change.config || change.state || change.logLevel) out.modified.push(change);
  }
  for (const [key, unit] of units) {
    if (!seen.has(key)) {
      units.delete(key);
      out.removed.push(unit);
    }
  }
  return out;
}

/**
 * Reassembles chunked CheckinExpected messages: chunks share a units_timestamp, the first carries every
 * other field, and a chunk with no units ends the batch. Older chunks are ignored; a newer one restarts.
 */
export class ChunkAssembler {
  private batch: proto.CheckinExpected | undefined;
  private stamp = -1;

  push(msg: proto.CheckinExpected): proto.CheckinExpected | undefined {
    if (!msg.unitsTimestamp) return msg;
    const t = Number(msg.unitsTimestamp.seconds ?? 0) * 1e9 + Number(msg.unitsTimestamp.nanos ?? 0);
    if (this.batch && t < this.stamp) return undefined;
    if (!this.batch || t > this.stamp) {
      this.batch = msg;
      this.stamp = t;
      if (msg.units.length === 0) return this.finish();
      return undefined;
    }
    if (msg.units.length === 0) return this.finish();
    this.batch.units.push(...msg.units);
    return undefined;
  }

  private finish(): proto.CheckinExpected {
    const done = this.batch!;
    this.batch = undefined;
    this.stamp = -1;
    return done;
  }
}
