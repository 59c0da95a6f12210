/**
 * A weighted fair queue by virtual finish time (start-time fair queueing): each flow (an actor) has a weight
 * (its GPU fraction); an item of cost c queued by a flow of weight w gets finish tag max(V, lastFinish) + c / w,
 * and the item with the smallest finish tag among the flows allowed to run goes next. Under contention, flows
 * are served in proportion to their weights; an idle flow does not bank credit (V moves on without it).
 *
 * A minimal local policy for the device host: src/cluster/fair_share.ts did not exist when this was written.
 */
interface Queued<T> {
  item: T;
  start: number;
  finish: number;
}
interface Flow<T> {
  weight: number;
  lastFinish: number;
  items: Queued<T>[];
  /** Index of the head in `items` (shifting arrays is O(n)). */
  head: number;
}

export class FairQueue<T> {
  private flows = new Map<number, Flow<T>>();
  private virtualTime = 0;
  private count = 0;

  get size(): number {
    return this.count;
  }

  addFlow(id: number, weight: number): void {
    if (!(weight > 0) || !Number.isFinite(weight)) throw new RangeError(`flow ${id}: weight must be > 0, got ${weight}`);
    this.flows.set(id, { weight, lastFinish: this.virtualTime, items: [], head: 0 });
  }

  /** Remove a flow and return what it still had queued. */
  removeFlow(id: number): T[] {
    const f = this.flows.get(id);
    if (!f) return [];
    this.flows.delete(id);
    const left = f.items.slice(f.head).map((q) => q.item);
    this.count -= left.length;
    return left;
  }

  pending(id: number): number {
    const f = this.flows.get(id);
    return f ? f.items.length - f.head : 0;
  }

  push(id: number, item: T, cost: number): void {
    const f = this.flows.get(id);
    if (!f) throw new RangeError(`flow ${id} is not registered`);
    const start = Math.max(this.virtualTime, f.lastFinish);
    const finish = start + Math.max(cost, 1) / f.weight;
    f.lastFinish = finish;
    f.items.push({ item, start, finish });
    this.count++;
  }

  /** The next item by finish tag among flows for which `eligible(id)` holds (all by default). */
  pop(eligible: (id: number) => boolean = () => true): { flow: number; item: T } | undefined {
    let best: Flow<T> | undefined;
    let bestId = -1;
    for (const [id, f] of this.flows) {
      if (f.head >= f.items.length || !eligible(id)) continue;
      if (!best || f.items[f.head].finish < best.items[best.head].finish) {
        best = f;
        bestId = id;
      }
    }
    if (!best) return undefined;
    const q = best.items[best.head++];
    if (best.head > 64 && best.head * 2 > best.items.length) {
      best.items = best.items.slice(best.head);
      best.head = 0;
    }
    this.virtualTime = Math.max(this.virtualTime, q.start);
    this.count--;
    return { flow: bestId, item: q.item };
  }
}
