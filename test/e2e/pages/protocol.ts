/** What the browser-test pages and workers exchange (see run.html). */

/** A module the harness can run: `run(params)` resolves to something JSON-serialisable. */
export interface RunnableModule {
  run(params: Record<string, string>): unknown | Promise<unknown>;
}

export interface RunRequest {
  module: string;
  params: Record<string, string>;
}

export type RunReply = { ok: true; result: unknown } | { ok: false; error: string };

export function errorText(e: unknown): string {
  if (e instanceof Error) return e.stack && e.stack.includes(e.message) ? e.stack : `${e.name}: ${e.message}\n${e.stack ?? ''}`;
  return String(e);
}

export async function runModule(module: string, params: Record<string, string>): Promise<unknown> {
  if (!module.startsWith('/')) throw new Error(`module must be an absolute path on this server, got '${module}'`);
  const m = (await import(/* @vite-ignore */ module)) as Partial<RunnableModule>;
  if (typeof m.run !== 'function') throw new Error(`${module} does not export a run() function`);
  return await m.run(params);
}
