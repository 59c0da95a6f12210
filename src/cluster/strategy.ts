/**
 * Placing a placement group's bundles on nodes, per strategy (Ray's semantics):
 *   STRICT_PACK   all bundles on one node, or not at all;
 *   PACK          all on one node if one can take them, otherwise as few nodes as possible (best effort);
 *   STRICT_SPREAD every bundle on a different node, or not at all;
 *   SPREAD        as many different nodes as possible, sharing nodes only when it must (best effort).
 * Placement is atomic (gang scheduling): a plan is built on copies of the node pools and only returned whole.
 * Bundles are tried in their own order first (so 4 x {GPU: 1} lands on GPUs 0..3 in order), then largest-first
 * (first-fit decreasing), which packs mixed sizes that the natural order would strand.
 */
import type { Demand, Grant, ResourcePool } from './resources.ts';
import { describeCapacity, describeDemand, fromUnits } from './resources.ts';

export type PlacementStrategy = 'PACK' | 'SPREAD' | 'STRICT_PACK' | 'STRICT_SPREAD';

export const PLACEMENT_STRATEGIES: readonly PlacementStrategy[] = ['PACK', 'SPREAD', 'STRICT_PACK', 'STRICT_SPREAD'];

/** Where each bundle goes: plan[i] is bundle i's node and the grant on that node's pool. */
export type BundlePlan = { node: number; grant: Grant }[];

/** The plan for `bundles` on `nodes` (their free resources), or null when they do not fit now. Pure. */
export function planBundles(nodes: readonly ResourcePool[], bundles: readonly Demand[], strategy: PlacementStrategy): BundlePlan | null {
  const natural = bundles.map((_, i) => i);
  const largestFirst = [...natural].sort((a, b) =>
    bundles[b].gpuUnits - bundles[a].gpuUnits || bundles[b].cpuUnits - bundles[a].cpuUnits ||
    bundles[b].hostMemoryBytes - bundles[a].hostMemoryBytes || a - b);
  for (const order of [natural, largestFirst]) {
    const plan = planInOrder(nodes, bundles, order, strategy);
    if (plan) return plan;
  }
  return null;
}

function planInOrder(nodes: readonly ResourcePool[], bundles: readonly Demand[], order: readonly number[], strategy: PlacementStrategy): BundlePlan | null {
  switch (strategy) {
    case 'STRICT_PACK':
      return packOnOneNode(nodes, bundles, order);
    case 'PACK':
      return packOnOneNode(nodes, bundles, order) ?? greedy(nodes, bundles, order, 'fewest-nodes');
    case 'SPREAD':
      return greedy(nodes, bundles, order, 'most-nodes');
    case 'STRICT_SPREAD':
      return distinctNodes(nodes, bundles, order);
  }
}

/** All bundles on the first node that takes them all. */
function packOnOneNode(nodes: readonly ResourcePool[], bundles: readonly Demand[], order: readonly number[]): BundlePlan | null {
  for (let n = 0; n < nodes.length; n++) {
    const pool = nodes[n].clone();
    const plan: BundlePlan = new Array(bundles.length);
    let ok = true;
    for (const b of order) {
      const grant = pool.fit(bundles[b]);
      if (!grant) { ok = false; break; }
      pool.take(grant);
      plan[b] = { node: n, grant };
    }
    if (ok) return plan;
  }
  return null;
}

/**
 * One bundle at a time onto the node the preference ranks first among those it fits: 'fewest-nodes' prefers nodes
 * that already hold bundles of this group (PACK's fallback), 'most-nodes' prefers nodes holding the fewest (SPREAD).
 * Node index breaks ties, so the result is deterministic.
 */
function greedy(nodes: readonly ResourcePool[], bundles: readonly Demand[], order: readonly number[], prefer: 'fewest-nodes' | 'most-nodes'): BundlePlan | null {
  const pools = nodes.map((p) => p.clone());
  const count = new Array<number>(nodes.length).fill(0);
  const plan: BundlePlan = new Array(bundles.length);
  const ranked = () => pools.map((_, n) => n).sort((a, b) =>
    (prefer === 'fewest-nodes' ? count[b] - count[a] : count[a] - count[b]) || a - b);
  for (const b of order) {
    let placed = false;
    for (const n of ranked()) {
      const grant = pools[n].fit(bundles[b]);
      if (!grant) continue;
      pools[n].take(grant);
      count[n]++;
      plan[b] = { node: n, grant };
      placed = true;
      break;
    }
    if (!placed) return null;
  }
  return plan;
}

/**
 * Each bundle on its own node. With one bundle per node, whether a bundle fits a node does not depend on the other
 * bundles, so this is bipartite matching (Kuhn's augmenting paths): exact, not a heuristic.
 */
function distinctNodes(nodes: readonly ResourcePool[], bundles: readonly Demand[], order: readonly number[]): BundlePlan | null {
  if (bundles.length > nodes.length) return null;
  const grants = bundles.map((d) => nodes.map((pool) => pool.fit(d)));
  const owner = new Array<number>(nodes.length).fill(-1); // node -> bundle
  // A free node first (lowest index), so an easy case keeps bundle i on node i; only then an augmenting path that
  // moves an earlier bundle elsewhere.
  const tryAssign = (b: number, seen: boolean[]): boolean => {
    for (let n = 0; n < nodes.length; n++) {
      if (!seen[n] && grants[b][n] && owner[n] < 0) {
        seen[n] = true;
        owner[n] = b;
        return true;
      }
    }
    for (let n = 0; n < nodes.length; n++) {
      if (seen[n] || !grants[b][n]) continue;
      seen[n] = true;
      if (tryAssign(owner[n], seen)) {
        owner[n] = b;
        return true;
      }
    }
    return false;
  };
  for (const b of order) {
    if (!tryAssign(b, new Array<boolean>(nodes.length).fill(false))) return null;
  }
  const plan: BundlePlan = new Array(bundles.length);
  owner.forEach((b, n) => {
    if (b >= 0) plan[b] = { node: n, grant: grants[b][n]! };
  });
  return plan;
}

/**
 * Why `bundles` can never be placed on `idleNodes` (the cluster with nothing used), in words. Called only after
 * planBundles failed on the idle cluster; names the most specific reason it can find.
 */
export function explainInfeasible(idleNodes: readonly ResourcePool[], bundles: readonly Demand[], strategy: PlacementStrategy): string {
  const largest = idleNodes.map(describeCapacity).join('; ');
  for (let b = 0; b < bundles.length; b++) {
    if (!idleNodes.some((pool) => pool.fit(bundles[b], true))) {
      return `bundle ${b} ${describeDemand(bundles[b])} does not fit on any node, even idle (nodes: ${largest})`;
    }
  }
  if (strategy === 'STRICT_SPREAD' && bundles.length > idleNodes.length) {
    return `STRICT_SPREAD puts every bundle on its own node: ${bundles.length} bundles but the cluster has ` +
      `${idleNodes.length} node${idleNodes.length === 1 ? '' : 's'}`;
  }
  if (strategy === 'STRICT_SPREAD') {
    return `STRICT_SPREAD puts every bundle on its own node: no assignment of the ${bundles.length} bundles to ` +
      `distinct nodes fits (nodes: ${largest})`;
  }
  const total = sumDemands(bundles);
  if (strategy === 'STRICT_PACK') {
    return `STRICT_PACK puts all ${bundles.length} bundles on one node, which needs ${describeDemand(total)} ` +
      `(whole GPUs: ${wholeGpus(bundles)}); no node holds that (nodes: ${largest})`;
  }
  const gpus = idleNodes.reduce((s, p) => s + p.slots.reduce((t, x) => t + x.capacityUnits, 0), 0);
  const cpus = idleNodes.reduce((s, p) => s + p.cpuCapacity, 0);
  if (total.gpuUnits > gpus) return `the bundles ask for GPU ${fromUnits(total.gpuUnits)} in total but the cluster has ${fromUnits(gpus)}`;
  if (total.cpuUnits > cpus) return `the bundles ask for CPU ${fromUnits(total.cpuUnits)} in total but the cluster has ${fromUnits(cpus)}`;
  return `no arrangement of the bundles ${bundles.map(describeDemand).join(', ')} fits, even on the idle cluster ` +
    `(nodes: ${largest})`;
}

function sumDemands(bundles: readonly Demand[]): Demand {
  return {
    gpuUnits: bundles.reduce((s, d) => s + d.gpuUnits, 0),
    cpuUnits: bundles.reduce((s, d) => s + d.cpuUnits, 0),
    hostMemoryBytes: bundles.reduce((s, d) => s + d.hostMemoryBytes, 0),
  };
}

/** GPUs the bundles take whole (a bundle of 2 takes 2 entire GPUs; fractions may share). */
function wholeGpus(bundles: readonly Demand[]): number {
  return bundles.reduce((s, d) => s + Math.floor(fromUnits(d.gpuUnits)), 0);
}
