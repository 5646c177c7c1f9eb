/**
 * A small LRU map with optional per-entry expiry (Map keeps insertion order). With `weigh`, entries
 * also count against `maxWeight` (bytes, say), and the oldest go until the total fits.
 */
export class LruCache<K, V> {
  private readonly map = new Map<K, { value: V; expires: number; weight: number }>();
  private weight = 0;

  constructor(private readonly capacity: number, private readonly weighing?: { maxWeight: number; weigh(v: V): number }) {}

  get(key: K, now: number = Date.now()): V | undefined {
    const entry = this.map.get(key);
    if (entry === undefined) return undefined;
    if (entry.expires <= now) {
      this.delete(key);
      return undefined;
    }
    this.map.delete(key);
    this.map.set(key, entry);
    return entry.value;
  }

  set(key: K, value: V, ttlMs: number = Infinity, now: number = Date.now()): void {
    this.delete(key);
    const weight = this.weighing ? this.weighing.weigh(value) : 0;
    // An entry heavier than the whole cache would only evict everything else.
    if (this.weighing && weight > this.weighing.maxWeight) return;
    this.map.set(key, { value, expires: now + ttlMs, weight });
    this.weight += weight;
    while (this.map.size > this.capacity || (this.weighing && this.weight > this.weighing.maxWeight)) {
      const oldest = this.map.keys().next();
      if (oldest.done) break;
      this.delete(oldest.value);
    }
  }

  delete(key: K): void {
    const entry = this.map.get(key);
    if (entry === undefined) return;
    this.weight -= entry.weight;
    this.map.delete(key);
  }

  get size(): number {
    return this.map.size;
  }

  /** The summed weight of the entries (0 without `weigh`). */
  get totalWeight(): number {
    return this.weight;
  }
}
