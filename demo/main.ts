// Placeholder demo: shows what WebGPU this browser offers.
const out = document.getElementById('gpu')!;

async function describe(): Promise<string> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) return 'navigator.gpu is missing: use a recent Chrome/Edge (or Firefox/Safari with WebGPU) over https or http://localhost.';
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) return 'WebGPU is present but no adapter was found.';
  const limits: Record<string, number> = {};
  for (const key in adapter.limits) limits[key] = (adapter.limits as unknown as Record<string, number>)[key];
  const { vendor, architecture, device, description } = adapter.info;
  const info = { vendor, architecture, device, description };
  return JSON.stringify({ info, features: [...adapter.features].sort(), limits }, null, 2);
}

describe().then((text) => (out.textContent = text), (e: unknown) => (out.textContent = `error: ${String(e)}`));
