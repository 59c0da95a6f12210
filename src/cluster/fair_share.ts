/**
 * Weighted fair sharing of GPU time: start-time fair queuing (SFQ, Goyal, Vin & Cheng 1996).
 *
 * Every queued item gets a start tag and a finish tag in virtual time:
 *   start  = max(V, the client's previous finish tag)       V: the start tag of the item last dequeued
 *   finish = start + cost / weight
 * dequeue() serves the smallest start tag (FIFO on ties). A client that stays backlogged advances its tags by
 * cost/weight per item, so over any busy interval the service (summed cost) each backlogged client receives is
 * proportional to its weight, to within one maximum item cost per client. A client that was idle restarts at V,
 * not at its old finish tag: idle time banks no credit, and a late joiner cannot starve the others by catching up.
 *
 * The device host uses it with weight = the actor's GPU fraction and cost = estimated GPU time of a command
 * list, then calls complete() with the measured time: the difference is charged to that client's later items.
 *
 * Shares hold for clients that keep work queued. A client with nothing queued when the host picks the next item
 * simply is not served (the queue is work-conserving); so an actor must submit its next command list before the
 * previous one finishes to get its full share (WebGPU submission is asynchronous, so actors can).
 *
 * Pure and deterministic: no clocks, no randomness.
 */
import { InvalidInputError } from '../errors.ts';

/** A queued item and its tags (read-only to callers; pass it back to complete()). */
export interface FairShareEntry<T> {
  readonly clientId: string;
  readonly weight: number;
  readonly costEstimate: number;
  readonly item: T;
  readonly startTag: number;
  readonly finishTag: number;
  /** Global enqueue order (ties and determinism). */
  readonly seq: number;
}

interface MutableEntry<T> {
  clientId: string;
  weight: number;
  costEstimate: number;
  item: T;
  startTag: number;
  finishTag: number;
  seq: number;
}

interface ClientState<T> {
  readonly queue: MutableEntry<T>[];
  head: number;
  /** Finish tag of the client's last enqueued item (where its next item starts, unless V is ahead). */
  lastFinish: number;
  /** Cost charged so far: estimates at dequeue, corrected by complete(). */
  served: number;
}

export class FairShareQueue<T> {
  readonly #clients = new Map<string, ClientState<T>>();
  #virtualTime = 0;
  #seq = 0;
  #size = 0;

  /** Items queued over all clients. */
  get size(): number {
    return this.#size;
  }

  /** V: the start tag of the item last dequeued. */
  get virtualTime(): number {
    return this.#virtualTime;
  }

  /**
   * Queues `item` for `clientId` with `weight` (> 0, e.g. its GPU fraction) and an estimated `costEstimate`
   * (>= 0, e.g. milliseconds of GPU time). Throws InvalidInputError for a bad weight or cost.
   */
  enqueue(clientId: string, weight: number, costEstimate: number, item: T): FairShareEntry<T> {
    if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0) {
      throw new InvalidInputError(`fair share: client "${clientId}" weight must be a finite number > 0, got ${String(weight)}`);
    }
    if (typeof costEstimate !== 'number' || !Number.isFinite(costEstimate) || costEstimate < 0) {
      throw new InvalidInputError(`fair share: client "${clientId}" cost estimate must be a finite number >= 0, got ${String(costEstimate)}`);
    }
    let client = this.#clients.get(clientId);
    if (!client) {
      client = { queue: [], head: 0, lastFinish: this.#virtualTime, served: 0 };
      this.#clients.set(clientId, client);
    }
    const startTag = Math.max(this.#virtualTime, client.lastFinish);
    const entry: MutableEntry<T> = {
      clientId, weight, costEstimate, item, startTag, finishTag: startTag + costEstimate / weight, seq: this.#seq++,
    };
    client.lastFinish = entry.finishTag;
    client.queue.push(entry);
    this.#size++;
    return entry;
  }

  /** The client whose head item is served next (smallest start tag, FIFO on ties). */
  #next(): ClientState<T> | undefined {
    let best: ClientState<T> | undefined;
    for (const client of this.#clients.values()) {
      if (client.head >= client.queue.length) continue;
      const e = client.queue[client.head];
      const b = best?.queue[best.head];
      if (!b || e.startTag < b.startTag || (e.startTag === b.startTag && e.seq < b.seq)) best = client;
    }
    return best;
  }

  /** The item dequeue() would return next, without taking it (the device host batches a client's consecutive items). */
  peek(): FairShareEntry<T> | undefined {
    const best = this.#next();
    return best?.queue[best.head];
  }

  /** The next item to serve (smallest start tag, FIFO on ties), or undefined when nothing is queued. */
  dequeue(): FairShareEntry<T> | undefined {
    const best = this.#next();
    if (!best) return undefined;
    const entry = best.queue[best.head++];
    if (best.head > 64 && best.head * 2 > best.queue.length) {
      best.queue.splice(0, best.head);
      best.head = 0;
    }
    this.#size--;
    this.#virtualTime = Math.max(this.#virtualTime, entry.startTag);
    best.served += entry.costEstimate;
    return entry;
  }

  /**
   * Charges the measured cost of a served entry: the difference from its estimate moves that client's queued and
   * future tags by (measured - estimate) / weight. An overestimate is refunded only down to V (no banked credit).
   */
  complete(entry: FairShareEntry<T>, measuredCost: number): void {
    if (typeof measuredCost !== 'number' || !Number.isFinite(measuredCost) || measuredCost < 0) {
      throw new InvalidInputError(`fair share: measured cost must be a finite number >= 0, got ${String(measuredCost)}`);
    }
    const client = this.#clients.get(entry.clientId);
    if (!client) return; // the client was removed meanwhile
    client.served += measuredCost - entry.costEstimate;
    const shift = (measuredCost - entry.costEstimate) / entry.weight;
    if (shift === 0) return;
    client.lastFinish = Math.max(this.#virtualTime, client.lastFinish + shift);
    for (let i = client.head; i < client.queue.length; i++) {
      const e = client.queue[i];
      e.startTag = Math.max(this.#virtualTime, e.startTag + shift);
      e.finishTag = e.startTag + e.costEstimate / e.weight;
    }
  }

  /** Items queued for `clientId`. */
  pendingOf(clientId: string): number {
    const client = this.#clients.get(clientId);
    return client ? client.queue.length - client.head : 0;
  }

  /**
   * The start tag `clientId`'s next item would get if enqueued now (V for a client never seen): where it stands
   * in the order while it has nothing queued (the device host holds others back for a client that is about to
   * send its next item).
   */
  nextStartOf(clientId: string): number {
    const client = this.#clients.get(clientId);
    return client ? Math.max(this.#virtualTime, client.lastFinish) : this.#virtualTime;
  }

  /** Cost served to `clientId` so far (estimates, corrected by complete()). */
  servedOf(clientId: string): number {
    return this.#clients.get(clientId)?.served ?? 0;
  }

  /** Forgets a client (its actor died) and returns its queued items, in order. */
  removeClient(clientId: string): T[] {
    const client = this.#clients.get(clientId);
    if (!client) return [];
    this.#clients.delete(clientId);
    const items = client.queue.slice(client.head).map((e) => e.item);
    this.#size -= items.length;
    return items;
  }
}
