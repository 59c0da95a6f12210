// FairShareQueue (start-time fair queuing): saturated clients get GPU time in proportion to their weights,
// measured costs correct estimates, idle clients bank no credit, late joiners neither starve nor are starved.
import { describe, expect, it } from 'vitest';
import { FairShareQueue } from '../../src/cluster/index.ts';
import { InvalidInputError } from '../../src/errors.ts';

/** Deterministic costs for the simulations (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

interface Client {
  id: string;
  weight: number;
  /** Estimated cost of the next item. */
  estimate: () => number;
  /** Measured cost of a served item (defaults to its estimate). */
  measure?: (estimate: number) => number;
}

/**
 * Serves `q` (kept saturated: every active client has `depth` items queued) until `budget` cost units have been
 * served; returns the cost served per client and the order of service.
 */
function serve(q: FairShareQueue<number>, clients: Client[], budget: number, depth = 2): { cost: Map<string, number>; order: string[] } {
  const cost = new Map(clients.map((c) => [c.id, 0]));
  const order: string[] = [];
  const refill = () => {
    for (const c of clients) while (q.pendingOf(c.id) < depth) q.enqueue(c.id, c.weight, c.estimate(), 0);
  };
  let served = 0;
  refill();
  while (served < budget) {
    const e = q.dequeue()!;
    const client = clients.find((c) => c.id === e.clientId); // absent: a client that stopped sending
    const measured = client?.measure ? client.measure(e.costEstimate) : e.costEstimate;
    q.complete(e, measured);
    cost.set(e.clientId, (cost.get(e.clientId) ?? 0) + measured);
    served += measured;
    order.push(e.clientId);
    refill();
  }
  return { cost, order };
}

/** Percentage shares of cost. */
function shares(cost: Map<string, number>): Record<string, number> {
  const total = [...cost.values()].reduce((a, b) => a + b, 0);
  return Object.fromEntries([...cost].map(([id, c]) => [id, (100 * c) / total]));
}

function expectShares(actual: Record<string, number>, want: Record<string, number>, tolerance = 5): void {
  for (const [id, pct] of Object.entries(want)) {
    expect(Math.abs(actual[id] - pct), `${id}: ${actual[id].toFixed(2)}% vs ${pct}%`).toBeLessThanOrEqual(tolerance);
  }
}

describe('FairShareQueue', () => {
  it('orders by start tag: weights 1 and 2 with unit costs serve A,B,B,A,B,A', () => {
    const q = new FairShareQueue<string>();
    for (let i = 0; i < 3; i++) q.enqueue('A', 1, 1, `a${i}`);
    for (let i = 0; i < 3; i++) q.enqueue('B', 2, 1, `b${i}`);
    const items: string[] = [];
    for (let e = q.dequeue(); e; e = q.dequeue()) items.push(e.item);
    expect(items).toEqual(['a0', 'b0', 'b1', 'a1', 'b2', 'a2']);
    expect(q.size).toBe(0);
  });

  it('two saturated clients at 0.4 / 0.6 get GPU time within 5 points of 40 / 60, whatever their item sizes', () => {
    const r = rng(1);
    // A sends small command lists, B large ones: the split is of time, not of items.
    const { cost } = serve(new FairShareQueue(), [
      { id: 'A', weight: 0.4, estimate: () => 1 + r() },
      { id: 'B', weight: 0.6, estimate: () => 5 + 5 * r() },
    ], 20_000);
    const s = shares(cost);
    expectShares(s, { A: 40, B: 60 });
    expectShares(s, { A: 40, B: 60 }, 0.5); // SFQ's bound is one item per client: far tighter than the goal
  });

  it('three saturated clients at 0.2 / 0.3 / 0.5 get 20 / 30 / 50 within 5 points', () => {
    const r = rng(2);
    const { cost } = serve(new FairShareQueue(), [
      { id: 'A', weight: 0.2, estimate: () => 1 + 9 * r() },
      { id: 'B', weight: 0.3, estimate: () => 1 + 9 * r() },
      { id: 'C', weight: 0.5, estimate: () => 1 + 9 * r() },
    ], 20_000);
    expectShares(shares(cost), { A: 20, B: 30, C: 50 });
  });

  it('measured costs that differ from the estimates are charged: shares stay proportional', () => {
    const r = rng(3);
    // Both estimate 5 per item; A's items really take 1..3, B's 5..15. Without complete() A would get far
    // more than 40% of items but far less time; with it, time is what is split.
    const { cost } = serve(new FairShareQueue(), [
      { id: 'A', weight: 0.4, estimate: () => 5, measure: () => 1 + 2 * r() },
      { id: 'B', weight: 0.6, estimate: () => 5, measure: () => 5 + 10 * r() },
    ], 20_000);
    expectShares(shares(cost), { A: 40, B: 60 });
  });

  it('an idle client banks no credit: on return it gets its share, not a burst', () => {
    const q = new FairShareQueue<number>();
    const A = { id: 'A', weight: 0.4, estimate: () => 1 };
    const B = { id: 'B', weight: 0.6, estimate: () => 1 };
    serve(q, [A, B], 1000);
    serve(q, [B], 5000); // A stops sending (its last queued items run out) while B runs alone for a long time
    expect(q.pendingOf('A')).toBe(0);
    const back = serve(q, [A, B], 500);
    expectShares(shares(back.cost), { A: 40, B: 60 });
    // From the first item on: A never runs more than 2 items in a row (a 40% client with unit items).
    let run = 0;
    let longest = 0;
    for (const id of back.order.slice(0, 50)) {
      run = id === 'A' ? run + 1 : 0;
      longest = Math.max(longest, run);
    }
    expect(longest).toBeLessThanOrEqual(2);
    expect(back.order.slice(0, 50).filter((id) => id === 'A').length).toBeLessThanOrEqual(22);
  });

  it('a client that joins late neither starves the others nor is starved', () => {
    const q = new FairShareQueue<number>();
    const r = rng(4);
    const A = { id: 'A', weight: 0.5, estimate: () => 1 + r() };
    const B = { id: 'B', weight: 0.5, estimate: () => 1 + r() };
    const C = { id: 'C', weight: 0.5, estimate: () => 1 + r() };
    serve(q, [A, B], 5000);
    const after = serve(q, [A, B, C], 600);
    expectShares(shares(after.cost), { A: 100 / 3, B: 100 / 3, C: 100 / 3 });
    const first = after.order.slice(0, 9);
    for (const id of ['A', 'B', 'C']) expect(first, `${id} served among the first 9 items`).toContain(id);
  });

  it('refuses bad weights and costs with InvalidInputError', () => {
    const q = new FairShareQueue<number>();
    expect(() => q.enqueue('A', 0, 1, 0)).toThrow(InvalidInputError);
    expect(() => q.enqueue('A', -1, 1, 0)).toThrow(/weight must be a finite number > 0/);
    expect(() => q.enqueue('A', 0.5, -1, 0)).toThrow(/cost estimate/);
    expect(() => q.enqueue('A', 0.5, NaN, 0)).toThrow(/cost estimate/);
    const e = q.enqueue('A', 0.5, 1, 0);
    expect(() => q.complete(e, Infinity)).toThrow(/measured cost/);
  });

  it('removeClient returns its queued items in order; sizes and service counts follow', () => {
    const q = new FairShareQueue<string>();
    q.enqueue('A', 1, 2, 'a0');
    q.enqueue('A', 1, 2, 'a1');
    q.enqueue('B', 1, 3, 'b0');
    const first = q.dequeue()!;
    expect(first.item).toBe('a0');
    expect(q.servedOf('A')).toBe(2);
    q.complete(first, 5);
    expect(q.servedOf('A')).toBe(5);
    expect([q.size, q.pendingOf('A'), q.pendingOf('B')]).toEqual([2, 1, 1]);
    expect(q.removeClient('A')).toEqual(['a1']);
    expect(q.size).toBe(1);
    expect(q.dequeue()!.item).toBe('b0');
    expect(q.dequeue()).toBeUndefined();
  });

  it('is deterministic', () => {
    const run = () => {
      const r = rng(9);
      return serve(new FairShareQueue(), [
        { id: 'A', weight: 0.4, estimate: () => 1 + 9 * r() },
        { id: 'B', weight: 0.6, estimate: () => 1 + 9 * r() },
      ], 2000).order;
    };
    expect(run()).toEqual(run());
  });
});
