// Harness self-test: a module that logs an error and then throws (see harness.spec.ts).
export function run(params: Record<string, string>): never {
  console.error(`selftest console error (${params.context})`);
  throw new Error(`selftest failure: ${params.token}`);
}
